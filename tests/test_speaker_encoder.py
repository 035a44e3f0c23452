"""The ONNX speaker encoder is Resemblyzer's GE2E, and it tells speakers apart."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.studio_data import paths
from voicelab.encoder import SpeakerEncoder, mel_frames, partial_windows, similarity


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def test_the_onnx_embedding_equals_resemblyzers(encoder: SpeakerEncoder) -> None:
    resemblyzer = pytest.importorskip("resemblyzer")  # reference only: torch + librosa
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    for path in [*paths("1688", 2), *paths("p226", 1), *paths("LJ", 1)]:  # 16 kHz flac and wav, 22.05 kHz wav
        wav, rate = sf.read(path, dtype="float32")
        ours = encoder.embed(wav, rate)
        theirs = reference.embed_utterance(resemblyzer.preprocess_wav(wav, rate))
        # Identical at 16 kHz; at 22.05 kHz the two resamplers differ slightly.
        assert similarity(ours, theirs) > (0.99999 if rate == 16_000 else 0.999), path.name


def test_mel_front_end_shape_and_windows() -> None:
    one_second = np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
    assert mel_frames(one_second).shape == (101, 40)
    starts = partial_windows(16_000 * 5)
    assert set(np.diff(starts)) == {77}  # 1.3 windows a second

    def coverage(start: int) -> float:
        return (16_000 * 5 - start * 160) / (160 * 160)

    # the last 1.6 s window is at least 75% audio; one more would have been less
    assert coverage(starts[-1]) >= 0.75 > coverage(starts[-1] + 77)
    assert partial_windows(100) == [0]


def test_the_same_speaker_scores_above_strangers(encoder: SpeakerEncoder) -> None:
    def embed(path: object) -> np.ndarray:
        return encoder.embed(*sf.read(path, dtype="float32"))

    a1, a2 = (embed(p) for p in paths("p225", 2))
    b1 = embed(paths("p226", 1)[0])
    assert similarity(a1, a2) > 0.85
    assert similarity(a1, b1) < similarity(a1, a2) - 0.15
