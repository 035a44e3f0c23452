"""A parent's recording, aligned to its text, as synthesizer outputs on the recording's timing.

Why this way: the vocoder's inputs are the synthesizer's (`asr` at 40 Hz: what is said;
F0 in Hz and energy at 80 Hz: how). To fine-tune the vocoder on a parent's audio it must be
fed inputs that describe *that* audio. No forced aligner is installable here, so the text is
rendered with a stock voice, its frames are matched to the recording by DTW on MFCCs normalised
per utterance (which removes much of the speaker and the microphone), `asr` is warped to the
recording's timing, and F0 and energy are measured on the recording itself, put on the
synthesizer's scales: F0 is in Hz on both (checked: YIN on a stock rendering / its F0_pred =
1.00 median), energy is mapped by a line fitted between the stock rendering's log RMS and its
own energy input (r = 0.98).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from hearmylove.engine.engine import SAMPLES_PER_FRAME, Engine, Features
from hearmylove.engine.voices import Voice
from hearmylove.errors import RecordingError, TextError

from ..judge import resample
from . import dtw
from .signal import SAMPLE_RATE, f0_on_grid, log_energy, mfcc

VOICED_HZ = 10.0  # below this the vocoder's source is silent (Kokoro's threshold)


class EnergyScale(BaseModel):
    """energy input = slope x ln(frame RMS) + intercept, fitted on one stock rendering."""

    slope: float
    intercept: float
    r: float = Field(description="correlation of the fit on the stock rendering")


class AlignmentReport(BaseModel):
    """What an alignment did, for logs and tests."""

    seconds: float = Field(description="the recording's duration at 40 frames a second")
    frames: int = Field(description="40 Hz frames of the aligned features (asr)")
    stock_frames: int = Field(description="40 Hz frames of the stock rendering of the same text")
    dtw_cost: float = Field(description="mean distance per path step between normalised MFCCs")
    voiced_fraction: float = Field(description="share of 80 Hz frames YIN finds voiced in the recording")
    f0_median_hz: float = Field(description="median voiced F0 of the recording (0 if none)")
    stock_f0_median_hz: float = Field(description="median F0 of the stock rendering where it is voiced")
    energy: EnergyScale


class Aligned(BaseModel):
    """A recording and the vocoder inputs that describe it, frame for frame."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    features: Features
    audio: np.ndarray = Field(description="the recording at 24 kHz, 600 samples per 40 Hz frame")
    stock: Features = Field(description="the stock rendering's own features (its timing)")
    stock_audio: np.ndarray = Field(description="the stock rendering at 24 kHz")
    report: AlignmentReport


def read_recording(path: Path) -> tuple[np.ndarray, int]:
    """Any file libsndfile reads, any rate; mono float32."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc
    return audio.mean(axis=1), int(rate)


def render_stock(engine: Engine, text: str, lang: str, voice: Voice) -> tuple[Features, np.ndarray]:
    """The synthesizer's features for the whole text (utterances joined) and their audio."""
    parts = [engine.features(u.phonemes, voice) for u in engine.frontend.utterances(text, lang)]
    if not parts:
        raise TextError(f"nothing to say in {text!r}: give the transcript of the recording")
    joined = Features(
        np.concatenate([p.asr for p in parts], axis=2),
        np.concatenate([p.f0 for p in parts], axis=1),
        np.concatenate([p.energy for p in parts], axis=1),
        parts[0].timbre,
    )
    return joined, np.concatenate([engine.vocode_whole(p) for p in parts])


def fit_energy(audio: np.ndarray, energy: np.ndarray) -> EnergyScale:
    """The line from a rendering's log RMS per 80 Hz frame to the energy input that made it."""
    measured = log_energy(audio, energy.shape[-1])
    slope, intercept = np.polyfit(measured, energy.reshape(-1), 1)
    return EnergyScale(slope=slope, intercept=intercept, r=float(np.corrcoef(measured, energy.reshape(-1))[0, 1]))


def _fill_unvoiced(f0: np.ndarray) -> np.ndarray:
    """Log-linear interpolation across unvoiced gaps, held at the ends: the synthesizer's F0 runs
    on through consonants (its F0 > 10 Hz on 47-99% of frames where YIN hears no voicing)."""
    voiced = np.flatnonzero(f0 > VOICED_HZ)
    if not len(voiced):
        return f0
    return np.exp(np.interp(np.arange(len(f0)), voiced, np.log(f0[voiced])))


def align(engine: Engine, audio: np.ndarray, rate: int, text: str, lang: str, voice: Voice) -> Aligned:
    """Vocoder inputs for a recording of `text`: `asr` from a stock rendering warped to the
    recording, F0 and energy measured on it, the stock voice's timbre."""
    stock, stock_audio = render_stock(engine, text, lang, voice)
    wav = resample(np.asarray(audio, np.float32), rate, SAMPLE_RATE)
    frames = max(1, int(round(len(wav) / SAMPLES_PER_FRAME)))
    wav = np.pad(wav, (0, max(0, frames * SAMPLES_PER_FRAME - len(wav))))[: frames * SAMPLES_PER_FRAME]
    fine, stock_fine = 2 * frames, 2 * stock.frames  # 80 Hz frames

    steps, cost = dtw.align(mfcc(stock_audio, SAMPLE_RATE, stock_fine), mfcc(wav, SAMPLE_RATE, fine))
    to_stock = dtw.map_frames(steps, fine)  # stock 80 Hz frame for each recording 80 Hz frame
    coarse = (to_stock[0::2] + to_stock[1::2]) // 4  # stock 40 Hz frame for each recording 40 Hz frame
    asr = stock.asr[:, :, coarse]

    measured = f0_on_grid(wav, SAMPLE_RATE, fine)
    stock_f0 = stock.f0[0, to_stock]
    f0 = np.where(stock_f0 > VOICED_HZ, _fill_unvoiced(measured), stock_f0)  # silent where the stock is

    scale = fit_energy(stock_audio, stock.energy)
    level = log_energy(wav, fine)
    level += np.percentile(log_energy(stock_audio, stock_fine), 90) - np.percentile(level, 90)  # same loudness
    energy = np.clip(scale.slope * level + scale.intercept, stock.energy.min(), stock.energy.max())

    voiced = measured[measured > 0]
    stock_voiced = stock.f0[stock.f0 > VOICED_HZ]
    report = AlignmentReport(
        seconds=frames / 40,
        frames=frames,
        stock_frames=stock.frames,
        dtw_cost=cost,
        voiced_fraction=float((measured > 0).mean()),
        f0_median_hz=float(np.median(voiced)) if len(voiced) else 0.0,
        stock_f0_median_hz=float(np.median(stock_voiced)) if len(stock_voiced) else 0.0,
        energy=scale,
    )
    features = Features(
        np.ascontiguousarray(asr, dtype=np.float32),
        f0[None].astype(np.float32),
        energy[None].astype(np.float32),
        stock.timbre,
    )
    return Aligned(features=features, audio=wav, stock=stock, stock_audio=stock_audio, report=report)
