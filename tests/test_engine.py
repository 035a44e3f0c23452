"""The engine as the speaker uses it: stream a story, early and bounded, without clicks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hearmylove.engine.engine import SAMPLE_RATE, SAMPLES_PER_FRAME, Engine, Features
from hearmylove.engine.voices import Voice
from hearmylove.errors import TextError, VoiceError

STORY = (
    "Once upon a time, a little fox found a shiny red apple under the old oak tree. "
    "He carried it home to share with his friend the rabbit. "
    "They ate it together while the sun went down."
)


def test_first_chunk_is_one_small_window_then_windows_follow(engine: Engine) -> None:
    chunks = list(engine.stream(STORY, lang="en"))
    cfg = engine.config
    assert len(chunks[0]) <= cfg.first_window_frames * SAMPLES_PER_FRAME
    speech = [c for c in chunks if np.any(c)]
    assert max(len(c) for c in speech) <= (cfg.window_frames + cfg.first_window_frames // 2) * SAMPLES_PER_FRAME
    audio = np.concatenate(chunks)
    assert 6 * SAMPLE_RATE < len(audio) < 20 * SAMPLE_RATE
    assert np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.01


def test_windowed_vocoding_is_as_long_as_the_whole_and_has_no_seam_clicks(engine: Engine) -> None:
    utterance = next(engine.frontend.utterances(STORY, "en"))
    features = engine.features(utterance.phonemes, engine.voice(None))
    whole = engine.vocode_whole(features)
    pieces = list(engine.vocode(features))
    windowed = np.concatenate(pieces)
    assert len(windowed) == len(whole) == features.frames * SAMPLES_PER_FRAME
    # A click is a jump between neighbouring samples far above what speech itself does.
    jumps = np.abs(np.diff(windowed))
    seams = np.cumsum([len(p) for p in pieces])[:-1]
    typical = np.percentile(jumps, 99.9)
    assert len(seams) >= 2
    assert all(jumps[s - 2 : s + 2].max() <= typical for s in seams), "a window seam jumps like a click"
    # The windowed spectrum stays close to the whole-graph one (log-magnitude, 20 ms frames).
    assert _log_spectral_distance(whole, windowed) < 0.8


def _log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    def spec(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, 480)[::240] * np.hanning(480)
        return np.log(np.abs(np.fft.rfft(frames)) + 1e-3)

    return float(np.abs(spec(a) - spec(b)).mean())


class CountingEngine(Engine):
    """The real engine, counting synthesizer calls to show how far ahead it works."""

    calls = 0

    def features(self, phonemes: str, voice: Voice, speed: float = 1.0) -> Features:
        CountingEngine.calls += 1
        return super().features(phonemes, voice, speed)


def test_stream_works_ahead_boundedly_and_stops_when_the_listener_stops(engine: Engine) -> None:
    counting = CountingEngine(engine.config, engine._synthesizer, engine._vocoder)
    long_story = " ".join(f"This is sentence number {i} of a very long story." for i in range(200))
    before = set(threading.enumerate())
    stream = counting.stream(long_story, lang="en")
    next(stream)
    workers = [t for t in threading.enumerate() if t not in before and t.name == "hml-synth"]
    assert len(workers) == 1, workers
    stream.close()  # the child pressed stop
    assert not workers[0].is_alive(), "synthesis went on after the listener stopped"
    assert 1 <= CountingEngine.calls <= 8, "synthesis must not run far ahead of playback"


def test_bad_requests_fail_before_any_audio(engine: Engine) -> None:
    with pytest.raises(VoiceError, match="unknown voice 'grandma'.*jf_tebukuro"):
        engine.stream("Hello.", voice="grandma")
    with pytest.raises(TextError, match="speed 5.0 is out of range"):
        engine.stream("Hello.", speed=5.0)
    with pytest.raises(TextError, match="empty"):
        engine.stream("   ")


def test_a_style_vector_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(VoiceError, match="256 floats"):
        Voice("broken", np.zeros(100, np.float32))
    with pytest.raises(VoiceError, match="finite"):
        Voice("nan", np.full(256, np.nan, np.float32))


def test_speed_changes_duration(engine: Engine) -> None:
    normal = engine.synthesize("The moon is round and bright tonight.", lang="en")
    fast = engine.synthesize("The moon is round and bright tonight.", lang="en", speed=1.5)
    assert len(fast) < 0.85 * len(normal)
