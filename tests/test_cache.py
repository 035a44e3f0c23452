"""The render cache: instant replays, and never a half-written story after a power cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hearmylove.engine.cache import RenderCache, render_key
from hearmylove.engine.engine import SAMPLE_RATE, Engine
from hearmylove.errors import CacheError


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("codec", ["opus", "flac"])
def test_a_rendered_story_reads_back_at_the_same_length(tmp_path: Path, codec: str) -> None:
    cache = RenderCache(tmp_path, codec=codec)  # type: ignore[arg-type]
    tone = _tone(2.0)
    path = cache.render("k1", [tone[:20_000], tone[20_000:]])
    assert cache.get("k1") == path and path.suffix == "." + codec
    back = np.concatenate(list(cache.read("k1")))
    assert len(back) == len(tone)
    middle = slice(2_000, -2_000)
    assert np.abs(back[middle] - tone[middle]).max() < 0.05
    if codec == "opus":
        assert path.stat().st_size < len(tone) * 2 / 8  # an eighth of 16-bit PCM or less


def test_a_render_that_fails_midway_leaves_no_file(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)

    def chunks():  # type: ignore[no-untyped-def]
        yield _tone(1.0)
        raise RuntimeError("synthesis died")

    with pytest.raises(RuntimeError):
        cache.render("k2", chunks())
    assert cache.get("k2") is None
    assert list(tmp_path.iterdir()) == []


def test_a_listener_who_stops_early_leaves_no_file(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    stream = cache.write("k3", iter([_tone(0.5), _tone(0.5), _tone(0.5)]))
    next(stream)
    stream.close()
    assert cache.get("k3") is None and list(tmp_path.iterdir()) == []


def test_keys_follow_text_voice_language_speed_and_vocoder(engine: Engine) -> None:
    a, b = engine.voice("jf_tebukuro"), engine.voice("jf_alpha")
    base = render_key("Hello.", a, "en")
    assert base == render_key("Hello.", a, "en")
    assert (
        len(
            {
                base,
                render_key("Hello!", a, "en"),
                render_key("Hello.", b, "en"),
                render_key("Hello.", a, "zh"),
                render_key("Hello.", a, "en", 1.2),
                render_key("Hello.", a, "en", vocoder="vocoder-qdq.onnx"),
            }
        )
        == 6
    )


def test_reading_a_missing_render_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no finished render for key 'nope'"):
        list(RenderCache(tmp_path).read("nope"))


_RENDER_FOREVER = """
import sys, numpy as np
from pathlib import Path
from hearmylove.engine.cache import RenderCache
cache = RenderCache(Path(sys.argv[1]))
def chunks():
    while True:
        yield (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32)
        print("chunk", flush=True)
cache.render("story", chunks())
"""


def test_power_cut_in_the_middle_of_a_write_is_never_played(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _RENDER_FOREVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for _ in range(5):
            assert child.stdout.readline().startswith("chunk")
        assert list(tmp_path.glob("*.partial*")), "the render should be under way"
        os.kill(child.pid, signal.SIGKILL)  # the plug is pulled
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(0.1)
    cache = RenderCache(tmp_path)  # the speaker boots again
    assert cache.get("story") is None
    assert list(tmp_path.iterdir()) == [], "the half-written render is swept away"


def test_a_real_story_renders_into_the_cache_and_plays_back(engine: Engine, tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    text = "The stars came out one by one."
    key = render_key(text, engine.voice(None), "en")
    streamed = np.concatenate(list(cache.write(key, engine.stream(text, lang="en"))))
    info = sf.info(str(cache.get(key)))
    assert info.samplerate == SAMPLE_RATE and abs(info.frames - len(streamed)) <= 1
