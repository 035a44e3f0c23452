"""A real recording aligned to its text: its length, its pitch, and a copy-synthesis that follows it.

The reader is a woman (LibriSpeech 1998) and the stock voice a man (jm_kumo): the copy keeps the
stock voice's timbre, so what brings it closer to her recording than the stock rendering is only
what the alignment took from the recording (timing, F0 on the synthesizer's scale, energy).
A wrong F0 scale (say, octaves) or a broken warp would lose that margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from hearmylove.engine.engine import Engine
from voicelab.adapt import dtw
from voicelab.adapt.align import Aligned, align, read_recording
from voicelab.adapt.measure import f0_error_st, timing_offset_ms
from voicelab.encoder import SpeakerEncoder, similarity

from .studio_data import EVALSET, utterances

UTTERANCE = "1998-15444-0001"  # 6.0 s: "he should make inquiries as to symptoms and time at which food..."


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, int, str]:
    (row,) = [r for r in utterances("1998") if r["utt_id"] == UTTERANCE]
    audio, rate = read_recording(EVALSET / row["path"])
    return audio, rate, row["transcript"].lower()


@pytest.fixture(scope="module")
def aligned(engine: Engine, recording: tuple[np.ndarray, int, str]) -> Aligned:
    audio, rate, text = recording
    return align(engine, audio, rate, text, "en", engine.voice("jm_kumo"))


def test_aligned_frames_cover_the_recording(aligned: Aligned, recording: tuple[np.ndarray, int, str]) -> None:
    audio, rate, _ = recording
    frames = aligned.features.frames
    assert abs(frames - len(audio) / rate * 40) <= 1  # 40 frames a second, as the synthesizer's asr
    assert aligned.features.asr.shape == (1, 512, frames)
    assert aligned.features.f0.shape == aligned.features.energy.shape == (1, 2 * frames)
    assert len(aligned.audio) == 600 * frames
    assert aligned.report.stock_frames != frames  # the stock voice kept its own timing; the warp changed it


def test_f0_is_the_readers_on_the_synthesizers_scale(aligned: Aligned) -> None:
    f0 = aligned.features.f0[0]
    voiced = f0[f0 > 10]
    assert len(voiced) > 0.5 * len(f0)
    assert 150 < np.median(voiced) < 280  # a woman's voice, in Hz like F0_pred
    assert aligned.report.stock_f0_median_hz < 130  # while the stock voice is a man's
    assert np.percentile(voiced, 1) > 60 and np.percentile(voiced, 99) < 500
    scale = aligned.report.energy
    assert scale.r > 0.95 and scale.slope > 0  # energy input follows the rendering's log RMS


def test_copy_synthesis_follows_the_recording_closer_than_the_stock_rendering(engine: Engine, aligned: Aligned) -> None:
    copy, stock = engine.vocode_whole(aligned.features), aligned.stock_audio
    assert f0_error_st(copy, aligned.audio) < 1.0  # semitones: the copy sings the reader's melody
    offset_copy, offset_stock = timing_offset_ms(copy, aligned.audio), timing_offset_ms(stock, aligned.audio)
    assert offset_copy < 40 and offset_copy < offset_stock / 2  # and keeps her timing
    encoder = SpeakerEncoder()
    reference = encoder.embed(aligned.audio, 24_000)
    sim_copy = similarity(encoder.embed(copy, 24_000), reference)
    sim_stock = similarity(encoder.embed(stock, 24_000), reference)
    assert sim_copy > sim_stock + 0.05, (sim_copy, sim_stock)  # measured 0.59 vs 0.43


def test_dtw_recovers_a_known_warp() -> None:
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(size=(200, 8)), axis=0)  # a smooth trajectory, like MFCCs over time
    t = np.linspace(0.0, 1.0, 260)
    warp = np.rint(199 * (t + 0.04 * np.sin(6 * np.pi * t))).astype(int)  # 0.2 to 1.3 frames of a per frame
    steps, _ = dtw.align(a, a[warp])
    assert (np.diff(steps, axis=0) >= 0).all()
    error = np.abs(dtw.map_frames(steps, len(warp)) - warp)
    assert (error == 0).mean() > 0.9 and error.max() <= 2  # off only where frames of `a` were skipped
