"""Pitch of speech (YIN), so a cloned voice can be held to the parent's F0 median and range.

The speaker encoder hardly sees pitch: a clone can score well on similarity and still
sound an octave off. Numpy only; 10 ms frames.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from .judge import resample

RATE = 16_000
FRAME = 640  # 40 ms: two periods of 50 Hz
HOP = 160
F0_MIN, F0_MAX = 60.0, 500.0
THRESHOLD = 0.15


class PitchStats(BaseModel):
    median_hz: float
    p10_hz: float
    p90_hz: float
    voiced_seconds: float

    @property
    def range_semitones(self) -> float:
        return float(12 * np.log2(self.p90_hz / self.p10_hz))


def f0_track(audio: np.ndarray, rate: int) -> np.ndarray:
    """F0 in Hz per 10 ms frame, 0 where unvoiced (YIN difference function via FFT)."""
    wav = resample(np.asarray(audio, dtype=np.float32), rate, RATE).astype(np.float64)
    if len(wav) < FRAME:
        return np.zeros(0)
    n = 1 + (len(wav) - FRAME) // HOP
    frames = np.lib.stride_tricks.as_strided(wav, shape=(n, FRAME), strides=(wav.strides[0] * HOP, wav.strides[0]))
    frames = frames - frames.mean(axis=1, keepdims=True)
    max_lag = int(RATE / F0_MIN)
    half = FRAME - max_lag
    spec_a = np.fft.rfft(frames, 2 * FRAME)
    spec_b = np.fft.rfft(frames[:, :half], 2 * FRAME)
    cross = np.fft.irfft(spec_a * np.conj(spec_b), 2 * FRAME)[:, : max_lag + 1]
    squares = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    energy0 = squares[:, half][:, None]
    lags = np.arange(max_lag + 1)
    energy_lag = squares[:, lags + half] - squares[:, lags]
    diff = energy0 + energy_lag - 2 * cross
    diff[:, 0] = 0
    cumulative = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, max_lag + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(cumulative, 1e-12)
    min_lag = int(RATE / F0_MAX)
    f0 = np.zeros(n)
    loud = energy0[:, 0] > 1e-3 * energy0.max() if n else np.zeros(0, bool)
    for i in np.flatnonzero(loud):
        row = cmnd[i]
        below = np.flatnonzero(row[min_lag:] < THRESHOLD)
        if not len(below):
            continue
        lag = min_lag + below[0]
        while lag + 1 <= max_lag and row[lag + 1] < row[lag]:
            lag += 1  # walk down to the dip's bottom
        if 0 < lag < max_lag:  # parabolic interpolation between lags
            a, b, c = row[lag - 1], row[lag], row[lag + 1]
            shift = 0.5 * (a - c) / max(a - 2 * b + c, 1e-12)
            f0[i] = RATE / (lag + float(np.clip(shift, -1, 1)))
    return f0


def pitch_stats(clips: list[tuple[np.ndarray, int]]) -> PitchStats | None:
    """Median and 10th/90th percentiles of voiced F0 over clips; None if nothing is voiced."""
    voiced = np.concatenate([f for f in (f0_track(a, r) for a, r in clips)] or [np.zeros(0)])
    voiced = voiced[voiced > 0]
    if len(voiced) < 20:
        return None
    p10, median, p90 = np.percentile(voiced, [10, 50, 90])
    return PitchStats(median_hz=median, p10_hz=p10, p90_hz=p90, voiced_seconds=len(voiced) * HOP / RATE)
