"""Speaker encoding and adaptation on real recordings, with the real engine and judges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hearmylove.engine.engine import Engine
from hearmylove.errors import VoiceError
from tests.studio_data import paths, utterances
from voicelab import clone
from voicelab.clone import BankVoice, Objective, Synth, adapt, encode, load_bank, style_spread
from voicelab.dnsmos import dnsmos
from voicelab.encoder import SpeakerEncoder
from voicelab.enroll import Enrollment, enroll


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder(threads=2)


@pytest.fixture(scope="module")
def enrollment(encoder: SpeakerEncoder) -> Enrollment:
    return enroll(paths("p226", 4), encoder, [r["transcript"] for r in utterances("p226")[:4]])


@pytest.fixture(scope="module")
def bank(engine: Engine, encoder: SpeakerEncoder) -> list[BankVoice]:
    return load_bank(engine, encoder, progress=lambda m: None)


def test_encoding_blends_the_closest_bank_voices(enrollment: Enrollment, bank: list[BankVoice]) -> None:
    encoding = encode(enrollment, bank, top=3)
    assert len(encoding.weights) == 3 and abs(sum(encoding.weights.values()) - 1) < 1e-6
    closest = max(encoding.similarities, key=encoding.similarities.__getitem__)
    assert max(encoding.weights, key=encoding.weights.__getitem__) == closest
    rows = {v.id: v.styles for v in bank}
    expected = sum(w * rows[v][: len(encoding.styles)] for v, w in encoding.weights.items())
    np.testing.assert_allclose(encoding.styles, expected, atol=1e-6)


def test_adaptation_resumes_from_its_checkpoint(
    enrollment: Enrollment,
    bank: list[BankVoice],
    engine: Engine,
    encoder: SpeakerEncoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(clone.ADAPT_TEXTS, "en", ["Good night, my love, sleep well."])  # a cheaper objective
    start = encode(enrollment, bank).styles
    first = adapt(enrollment, start, bank, engine, encoder, "en", 600, tmp_path, max_evaluations=11)
    assert len(first.history) == 11 and first.stopped == "evaluation limit"
    assert (tmp_path / "adapt.pickle").exists()
    resumed = adapt(enrollment, start, bank, engine, encoder, "en", 600, tmp_path, max_evaluations=21)
    assert len(resumed.history) == 21
    assert [s.similarity for s in resumed.history[:11]] == [s.similarity for s in first.history]
    assert resumed.similarity >= resumed.start_similarity  # the start is a candidate: never worse
    assert resumed.check_error <= clone.MAX_CHECK_ERROR["en"]
    # A different enrollment does not pick up this checkpoint.
    other = Enrollment(enrollment.recordings, -enrollment.embedding, enrollment.pitch, 1)
    fresh = adapt(other, start, bank, engine, encoder, "en", 600, tmp_path, max_evaluations=1)
    assert len(fresh.history) == 1


def test_a_voice_whisper_cannot_understand_is_never_accepted(
    enrollment: Enrollment, bank: list[BankVoice], engine: Engine, encoder: SpeakerEncoder
) -> None:
    start = bank[0].styles
    objective = Objective(enrollment, start, style_spread(bank), Synth(engine, ["Hello."], "en"), encoder)
    garbled = (-2 * start[:, : objective.scale.size].mean(axis=0)) / objective.scale  # timbre inside out
    history = [clone.Step(1, 0.0, 0.5, -0.5, None)]
    rejected: list[str] = []
    with pytest.raises(VoiceError, match="no candidate voice stayed intelligible"):
        clone._accept([garbled], objective, engine, "en", history, 0.5, "test", progress=rejected.append)
    assert "rejected" in rejected[0]
    accepted = clone._accept(
        [garbled, np.zeros(objective.scale.size)], objective, engine, "en", history, 0.5, "t", print
    )
    np.testing.assert_array_equal(accepted.styles, start)  # fell back to the start voice
    assert accepted.check_error <= clone.MAX_CHECK_ERROR["en"]


def test_dnsmos_prefers_real_speech_to_noise() -> None:
    import soundfile as sf

    speech = dnsmos(*sf.read(paths("p225", 1)[0], dtype="float32"))
    noise = dnsmos(np.random.default_rng(0).standard_normal(16_000 * 4).astype(np.float32) * 0.1, 16_000)
    assert speech.ovrl > 2.5 and noise.ovrl < 2.0
    assert speech.ovrl > noise.ovrl + 1
