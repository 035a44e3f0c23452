"""Recordings are checked before cloning: bad ones are refused with a reason a technician can act on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hearmylove.errors import RecordingError
from tests.studio_data import paths, utterances
from voicelab.encoder import SpeakerEncoder
from voicelab.enroll import enroll
from voicelab.pitch import pitch_stats


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def _write(path: Path, audio: np.ndarray, rate: int) -> Path:
    sf.write(path, audio, rate)
    return path


def test_good_recordings_in_any_format_rate_and_channels_enroll(tmp_path: Path, encoder: SpeakerEncoder) -> None:
    files = []
    for i, src in enumerate(paths("p225", 4)):
        wav, rate = sf.read(src, dtype="float32")
        if i == 0:  # stereo 44.1 kHz Ogg Vorbis, as a phone might record
            up = np.interp(np.arange(0, len(wav), rate / 44_100), np.arange(len(wav)), wav)
            files.append(_write(tmp_path / "a.ogg", np.stack([up, up], axis=1), 44_100))
        elif i == 1:
            files.append(_write(tmp_path / "b.flac", wav, rate))
        else:
            files.append(_write(tmp_path / f"c{i}.wav", wav, rate))
    texts = [r["transcript"] for r in utterances("p225")[:4]]
    enrollment = enroll(files, encoder, texts)
    assert enrollment.groups == 1
    assert 10 < enrollment.speech_seconds < 30
    assert enrollment.pitch is not None and 140 < enrollment.pitch.median_hz < 220  # a woman's voice
    assert 8 < (enrollment.letters_per_second or 0) < 25


def test_an_unreadable_file_and_too_little_speech_are_named(tmp_path: Path, encoder: SpeakerEncoder) -> None:
    junk = tmp_path / "voice-memo.wav"
    junk.write_bytes(b"this is not audio" * 100)
    wav, rate = sf.read(paths("p225", 1)[0], dtype="float32")
    short = _write(tmp_path / "short.wav", wav[: 3 * rate], rate)
    with pytest.raises(RecordingError) as err:
        enroll([junk, short], encoder)
    message = str(err.value)
    assert "voice-memo.wav: cannot read it as audio" in message
    assert "too little speech" in message


def test_clipped_and_noisy_recordings_are_refused(tmp_path: Path, encoder: SpeakerEncoder) -> None:
    src = paths("p226", 2)
    wav, rate = sf.read(src[0], dtype="float32")
    clipped = _write(tmp_path / "loud.wav", np.clip(wav * 20, -1, 1), rate)
    wav2, rate2 = sf.read(src[1], dtype="float32")
    hiss = np.random.default_rng(1).standard_normal(len(wav2)).astype(np.float32) * np.sqrt(np.mean(wav2**2))
    noisy = _write(tmp_path / "street.wav", np.clip(wav2 + hiss, -1, 1), rate2)
    with pytest.raises(RecordingError) as err:
        enroll([clipped, noisy], encoder)
    message = str(err.value)
    assert "loud.wav: clipped" in message
    assert "street.wav: too noisy" in message


def test_two_speakers_are_refused(encoder: SpeakerEncoder) -> None:
    with pytest.raises(RecordingError, match="2 different speakers"):
        enroll([*paths("p225", 3), *paths("1688", 3)], encoder)


def test_pitch_of_a_tone_and_of_real_voices() -> None:
    t = np.arange(16_000) / 16_000
    tone = pitch_stats([(0.3 * np.sin(2 * np.pi * 150 * t), 16_000)])
    assert tone is not None and abs(tone.median_hz - 150) < 1.5
    man = pitch_stats([sf.read(p, dtype="float32") for p in paths("p226", 2)])
    woman = pitch_stats([sf.read(p, dtype="float32") for p in paths("p225", 2)])
    assert man and woman and man.median_hz < 140 < woman.median_hz
    assert pitch_stats([(np.zeros(16_000), 16_000)]) is None
