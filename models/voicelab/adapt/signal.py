"""Frame-level measurements on the vocoder's 80 Hz grid: MFCCs for alignment, F0 and energy.

Why one grid: the synthesizer's F0 and energy come at 80 frames a second (300 samples at
24 kHz), its `asr` at 40. Measuring the recording and the stock rendering on exactly that grid
(frame j covers samples 300j..300j+299 at 24 kHz) makes a DTW path directly a map between
vocoder frames. Numpy only.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from ..judge import resample
from ..pitch import HOP as PITCH_HOP
from ..pitch import RATE as PITCH_RATE
from ..pitch import f0_track

SAMPLE_RATE = 24_000
FRAME_HOP = 300  # samples per 80 Hz frame at 24 kHz
RATE = 16_000  # MFCCs are taken at 16 kHz: speech content, not the vocoder's top octave
HOP = RATE // 80
WINDOW = 400  # 25 ms
N_FFT = 512
N_MELS = 40
N_MFCC = 20


@functools.cache
def _mel_dct() -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filters [N_FFT/2+1, N_MELS] (HTK mel, 60 Hz-7.6 kHz) and a DCT-II [N_MELS, N_MFCC]."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(60.0)), mel(np.array(7600.0)), N_MELS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    filters = np.maximum(0.0, np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)))
    n = np.arange(N_MELS)
    dct = np.cos(np.pi / N_MELS * (n[:, None] + 0.5) * np.arange(N_MFCC)[None, :]) * np.sqrt(2.0 / N_MELS)
    return filters.T.astype(np.float64), dct


def _frames(wav: np.ndarray, frames: int, hop: int, window: int) -> np.ndarray:
    """[frames, window]: frame j centred on the middle of hop j (zero padded at the ends)."""
    pad = (window - hop) // 2
    padded = np.pad(wav, (pad, max(0, frames * hop + window - pad - len(wav))))
    idx = np.arange(frames)[:, None] * hop + np.arange(window)[None, :]
    return padded[idx]


def mfcc(audio: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """[frames, N_MFCC] MFCCs on the 80 Hz grid, mean and variance normalised per utterance: this
    takes out much of what differs between speakers and microphones (channel, level, vocal tract
    average) and keeps what the words do, which is what DTW must match."""
    wav = resample(np.asarray(audio, np.float32), rate, RATE).astype(np.float64)
    spec = np.abs(np.fft.rfft(_frames(wav, frames, HOP, WINDOW) * np.hanning(WINDOW), N_FFT)) ** 2
    filters, dct = _mel_dct()
    ceps = np.log(spec @ filters + 1e-8) @ dct
    return (ceps - ceps.mean(axis=0)) / (ceps.std(axis=0) + 1e-8)


def log_energy(audio24: np.ndarray, frames: int) -> np.ndarray:
    """Natural log of each 80 Hz frame's RMS (600-sample window at 24 kHz), floored at -12."""
    windows = _frames(np.asarray(audio24, np.float64), frames, FRAME_HOP, 2 * FRAME_HOP)
    return np.log(np.sqrt((windows**2).mean(axis=1)) + 6e-6)


def f0_on_grid(audio: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """F0 in Hz on the 80 Hz grid (YIN, `voicelab.pitch`), 0 where unvoiced.

    YIN's 10 ms frames are interpolated in log F0 between voiced neighbours; a grid frame next
    to an unvoiced one takes the nearer value. A 5-frame median removes single-frame octave slips."""
    track = f0_track(audio, rate)
    if not len(track):
        return np.zeros(frames)
    frame_len = 640  # pitch.FRAME: YIN frame i is centred at i*HOP + FRAME/2 samples at 16 kHz
    centres = (np.arange(frames) * FRAME_HOP + FRAME_HOP / 2) / SAMPLE_RATE * PITCH_RATE
    pos = np.clip((centres - frame_len / 2) / PITCH_HOP, 0, len(track) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(track) - 1)
    frac = pos - lo
    both = (track[lo] > 0) & (track[hi] > 0)
    log_f0 = np.where(both, (1 - frac) * np.log(np.maximum(track[lo], 1)) + frac * np.log(np.maximum(track[hi], 1)), 0)
    nearest = np.where(frac < 0.5, track[lo], track[hi])
    f0 = np.where(both, np.exp(log_f0), nearest)
    return _median_voiced(f0, 5)


def _median_voiced(f0: np.ndarray, width: int) -> np.ndarray:
    """Median over the voiced frames of each window; unvoiced frames stay 0."""
    half = width // 2
    padded = np.pad(np.where(f0 > 0, f0, np.nan), half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (unvoiced) are expected
        med = np.nanmedian(windows, axis=1)
    return np.where(f0 > 0, med, 0.0)
