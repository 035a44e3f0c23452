"""Voices: a style vector the synthesizer and vocoder are conditioned on.

A stock Kokoro voice holds one 256-float row per utterance length (510 rows); a cloned
voice may hold a single row. Either way the engine asks `style_for(n_phonemes)`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VoiceError

STYLE_DIM = 256
TIMBRE_DIMS = 128
DEFAULT_VOICE = "jf_tebukuro"
# The stock voice each language is clearest in (Whisper WER/CER, docs/engine.md),
# used until a family's cloned voice is installed.
DEFAULT_VOICES = {"en": "jf_tebukuro", "zh": "jf_gongitsune"}


@dataclass(frozen=True)
class Voice:
    id: str
    styles: np.ndarray = field(repr=False)
    """Shape (rows, 256): row i is the style for an utterance of i + 1 phonemes."""
    vocoder: Path | None = None
    """The parent's adapted student head (merged at install, `engine.adapted`); None: the speaker's vocoder."""
    vocoder_sha256: str = ""
    """The merged head's sha256, checked when it was written: part of the voice's digest."""

    def __post_init__(self) -> None:
        styles = np.asarray(self.styles, dtype=np.float32)
        if styles.size == 0 or styles.size % STYLE_DIM or styles.shape[-1] != STYLE_DIM:
            raise VoiceError(f"voice {self.id!r} needs rows of {STYLE_DIM} floats, got shape {styles.shape}")
        styles = styles.reshape(-1, STYLE_DIM)
        if not np.isfinite(styles).all():
            raise VoiceError(f"voice {self.id!r} has values that are not finite (NaN or infinity)")
        object.__setattr__(self, "styles", styles)

    def style_for(self, n_phonemes: int) -> np.ndarray:
        row = min(max(n_phonemes, 1), len(self.styles)) - 1
        return self.styles[row : row + 1]

    @property
    def digest(self) -> str:
        """Identifies the exact vector, so cached renders follow a changed voice."""
        return hashlib.sha256(self.styles.tobytes() + self.vocoder_sha256.encode()).hexdigest()[:16]


class VoiceBank:
    """The stock voices shipped with the base model, by id."""

    def __init__(self, voices_file: Path) -> None:
        with np.load(voices_file) as npz:
            self._styles = {name: npz[name] for name in npz.files}

    @property
    def ids(self) -> list[str]:
        return sorted(self._styles)

    def get(self, voice: str) -> Voice:
        if voice in self._styles:
            return Voice(voice, self._styles[voice])
        path = Path(voice)
        if path.suffix == ".npy" and path.is_file():
            return Voice(path.stem, np.load(path))
        raise VoiceError(f"unknown voice {voice!r}; stock voices are {', '.join(self.ids)} (or give a .npy style file)")
