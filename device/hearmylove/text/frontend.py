"""Story text in, phoneme utterances out: normalization, language, sentences, G2P."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ..errors import LanguageError, TextError
from . import normalize
from .g2p import G2P, EnglishBackend, Mandarin, english_g2p
from .sentences import fit_phonemes, sentences

log = logging.getLogger(__name__)

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh", "auto")

_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Utterance:
    """One model call: phonemes within the token limit and the pause that follows."""

    phonemes: str
    pause: float
    sentence: str


def detect_language(text: str) -> Language:
    """Mandarin when Han characters are a real share of the letters, else English."""
    han = len(normalize.HAN_RE.findall(text))
    latin = len(_LATIN.findall(text))
    if han == 0 and latin == 0:
        raise TextError(f"nothing speakable in the text (starts {text[:40]!r}): it has no English or Chinese letters")
    # A Chinese character carries about as much as a 3-4 letter word.
    return "zh" if han * 3 >= latin else "en"


def check_language(lang: str) -> str:
    """`lang` itself if it is one of LANGUAGES ("en", "zh", "auto"); else raise LanguageError naming them."""
    if lang not in LANGUAGES:
        raise LanguageError(f"language {lang!r} is not supported; use one of {', '.join(LANGUAGES)}")
    return lang


class Frontend:
    """Holds the G2P back ends (loaded once, lazily: Mandarin costs nothing until used)."""

    def __init__(
        self,
        english: EnglishBackend = "espeak",
        sentence_pause: float = 0.25,
        paragraph_pause: float = 0.7,
        max_chars: int = 200_000,
    ) -> None:
        self.english_backend: EnglishBackend = english
        self.sentence_pause = sentence_pause
        self.paragraph_pause = paragraph_pause
        self.max_chars = max_chars
        self._english: G2P | None = None
        self._mandarin: G2P | None = None

    def g2p(self, lang: Language) -> G2P:
        """The phonemizer for "en" or "zh", built on first use (loading spaCy or jieba takes seconds)."""
        if self._english is None:
            self._english = english_g2p(self.english_backend)
        if lang == "en":
            return self._english
        if self._mandarin is None:
            self._mandarin = Mandarin(self._english)
        return self._mandarin

    def prepare(self, text: str, lang: str = "auto") -> tuple[str, Language]:
        """Validate and clean a whole story; fail before any audio is made."""
        check_language(lang)
        if not isinstance(text, str):
            raise TextError(f"story text must be a string, got {type(text).__name__}")
        if len(text) > self.max_chars:
            raise TextError(
                f"story text is {len(text):,} characters; the limit is {self.max_chars:,} "
                "(split it into several stories)"
            )
        if normalize.junk_share(text) > 0.1:
            raise TextError(
                f"story text looks like binary data, not writing ({normalize.junk_share(text):.0%} control or "
                "undecodable characters); send UTF-8 text"
            )
        cleaned = normalize.speakable_script(normalize.clean(text))
        if not cleaned:
            raise TextError("story text is empty (or holds only characters that cannot be spoken)")
        language: Language = detect_language(cleaned) if lang == "auto" else lang  # type: ignore[assignment]
        return cleaned, language

    def utterances(self, text: str, lang: str = "auto") -> Iterator[Utterance]:
        """`prepare` then `phonemize`: raises TextError or LanguageError at once, then yields lazily."""
        return self.phonemize(*self.prepare(text, lang))

    def phonemize(self, cleaned: str, language: Language) -> Iterator[Utterance]:
        """Yield utterances of prepared text lazily: a long story is never phonemized at once."""
        g2p = self.g2p(language)
        spell = normalize.mandarin if language == "zh" else normalize.english
        spoken = 0
        for sentence in sentences(cleaned):
            words = spell(sentence.text)
            phonemes = g2p(words) if words else ""
            pieces = fit_phonemes(phonemes)
            if not pieces:
                log.debug("nothing to say in %r", sentence.text[:60])
                continue
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                pause = (self.paragraph_pause if sentence.paragraph_end else self.sentence_pause) if last else 0.0
                spoken += 1
                yield Utterance(piece, pause, sentence.text)
        if spoken == 0:
            raise TextError(f"nothing speakable in the text (starts {cleaned[:40]!r})")
