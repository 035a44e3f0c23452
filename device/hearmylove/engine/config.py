"""Engine settings: how the models run, separate from what a single request asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..paths import default_model_dir


class EngineConfig(BaseModel):
    """Chosen once when the engine loads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path = Field(default_factory=default_model_dir)
    """Folder written by `voicelab export-base` (synthesizer, vocoder, vocab, voices)."""
    threads: int = Field(2, ge=1, le=64)
    """onnxruntime intra-op threads per session; the Pi 4 has 4 cores."""
    spinning: bool = False
    """Let onnxruntime threads spin between ops. Faster alone, much slower next to other work."""
    optimization: Literal["disable", "basic", "extended", "all"] = "all"
    vocoder: Literal["int8", "qdq", "student"] = "qdq"
    """`qdq`: static int8, built once from Kokoro's vocoder, about twice as fast and within the quality
    gates; `int8`: Kokoro's own dynamic int8 (the teacher); `student`: the distilled head after
    Kokoro's front, needs its artefact in `student_dir` (docs/vocoder.md)."""
    english: Literal["espeak", "misaki"] = "espeak"
    """English G2P back end (docs/engine.md compares them)."""
    first_window_frames: int = Field(30, ge=8, le=400)
    """Vocoder window for the first audio of an utterance: small, so sound starts early."""
    window_frames: int = Field(100, ge=8, le=800)
    """Vocoder window after the first (40 frames a second): bounds memory on long stories."""
    context_frames: int = Field(8, ge=0, le=64)
    """Frames of context each side of a window, dropped after the vocoder has seen them."""
    crossfade_samples: int = Field(240, ge=0, le=2400)
    """Overlap blended at each window seam so no click is heard (10 ms at 24 kHz)."""
    prefetch_seconds: float = Field(8.0, ge=0.5, le=120.0)
    """Audio synthesized ahead of the listener; the rest waits, so memory stays flat."""
    sentence_pause: float = Field(0.25, ge=0.0, le=3.0)
    paragraph_pause: float = Field(0.7, ge=0.0, le=5.0)
    max_text_chars: int = Field(200_000, ge=1)
    """Stories longer than this are refused (about 3.5 hours of speech)."""
