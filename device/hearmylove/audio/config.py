"""Player settings and the audio format the speaker plays."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SAMPLE_RATE = 24_000  # the engine's rate; not imported from it so playing needs no onnxruntime
PACE_ENV = "HEARMYLOVE_AUDIO_PACE"
ALSA_RAW_FORMAT = "S16_LE"
"""Sample format of the file written by `alsa_file_config`'s PCM (mono, SAMPLE_RATE)."""
_CHIME_LEVEL = 0.5  # relative to the volume: noticeable over a story, not startling


class AudioConfig(BaseModel):
    """Player settings, validated once at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | None = None
    """PortAudio output device name (list them with `python -m sounddevice`); None for the default."""
    max_volume: float = Field(0.8, ge=0.0, le=1.0)
    """Ceiling on the gain: nothing (set_volume, the config, the chime) plays louder. Protects small ears."""
    volume: float = Field(0.5, ge=0.0, le=1.0)
    """Volume at start-up; clamped to max_volume."""
    fade_ms: int = Field(30, ge=1, le=1000)
    """Linear fades on pause, resume, stop, underrun, a source's end and volume changes: nothing clicks."""
    buffer_seconds: float = Field(2.0, ge=0.1, le=60.0)
    """Ring buffer between synthesis and the sound card: rides out a slow sentence."""
    latency: Literal["low", "high"] | Annotated[float, Field(gt=0.0, le=2.0)] = "high"
    """PortAudio output latency ("high" is safest on a busy Pi) or seconds."""
    chime: bool = True
    """Play a short two-note chime when a new story arrives."""
