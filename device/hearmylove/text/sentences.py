"""Cut a story into pieces the model can say in one breath.

Sentences are the unit of streaming: the engine says one while it prepares the next.
Kokoro takes at most 510 phoneme tokens a call, so a sentence whose phonemes run longer
is cut at clause punctuation, then between words, never inside one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_TOKENS = 510
# Soft target below the hard limit: shorter calls start sooner and keep intonation.
TARGET_TOKENS = 300

_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])[\"'”’)]*\s+|(?<=[。！？])")
_CLAUSE_END = re.compile(r"(?<=[,;:—，；：、])\s*")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a story; `paragraph_end` when a paragraph ends with it (a longer pause)."""

    text: str
    paragraph_end: bool


def sentences(text: str) -> Iterator[Sentence]:
    """Yield sentences in order; the last of each paragraph says so (a longer pause)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    for paragraph in paragraphs:
        paragraph = re.sub(r"\s*\n\s*", " ", paragraph)
        parts = [s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()]
        for i, part in enumerate(parts):
            yield Sentence(part, paragraph_end=i == len(parts) - 1)


def fit_phonemes(phonemes: str, limit: int = TARGET_TOKENS) -> list[str]:
    """Split a phoneme string into pieces of at most `limit` symbols.

    Prefers clause punctuation, then spaces between words; a single word longer than
    the limit (never seen in real text) is cut hard so the model's limit always holds.
    """
    phonemes = phonemes.strip()
    if len(phonemes) <= limit:
        return [phonemes] if phonemes else []
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(phonemes):
        pieces.extend(_pack(clause.split(" "), limit) if len(clause) > limit else [clause])
    return [p for p in _pack(pieces, limit) if p]


def _pack(words: list[str], limit: int) -> list[str]:
    """Greedily join words (or clauses) with spaces into runs no longer than `limit`."""
    out: list[str] = []
    current = ""
    for word in words:
        word = word.strip()
        if not word:
            continue
        while len(word) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        joined = f"{current} {word}" if current else word
        if len(joined) > limit:
            out.append(current)
            current = word
        else:
            current = joined
    if current:
        out.append(current)
    return out
