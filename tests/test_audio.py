"""The player: what goes in comes out, nothing clicks, nothing is louder than allowed, nothing blocks.

Most scenarios drive the real Player through `WavFileOutput` and read the WAV back; the last
ones play through the real PortAudio into an ALSA file PCM, in a subprocess so that
ALSA_CONFIG_PATH is set before PortAudio loads.
"""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydantic
import pytest
import soundfile as sf

from hearmylove.audio import (
    SAMPLE_RATE,
    AudioConfig,
    Mixer,
    Player,
    RingBuffer,
    WavFileOutput,
    alsa_file_config,
    read_alsa_raw,
)
from hearmylove.errors import AudioError

FADE = 720  # 30 ms at 24 kHz, the default fade
LSB = 1 / 32768  # one step of the 16-bit WAV
TIMEOUT = 10.0


def tone(seconds: float, freq: float = 220.0, amp: float = 0.2, offset: float = 0.3) -> np.ndarray:
    """A cosine over a DC offset: never zero, so silence in the output is unambiguous."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (offset + amp * np.cos(2 * np.pi * freq * t)).astype(np.float32)


def chunked(x: np.ndarray, size: int = 5000) -> list[np.ndarray]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def ramp_up(n: int = FADE) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.float32) / n


def faded(x: np.ndarray) -> np.ndarray:
    """x as the player plays a whole source: a fade-in at the start, a fade-out to zero at the end."""
    y = x.copy()
    y[:FADE] *= ramp_up()
    y[-FADE:] *= ramp_up()[::-1] - 1 / FADE
    return y


def amplitude(x: np.ndarray, freq: float) -> float:
    """Amplitude of one frequency in x (a single DFT bin, any frequency)."""
    t = np.arange(len(x)) / SAMPLE_RATE
    return float(2 * np.abs(np.sum(x * np.exp(-2j * np.pi * freq * t))) / len(x))


def dominant(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / (8 * len(x)))


def smooth_step(x: np.ndarray, gain: float) -> float:
    """The largest sample-to-sample step a click-free output of x may have: the signal's own, plus a fade's slope."""
    return float(np.abs(np.diff(gain * x)).max() + gain * np.abs(x).max() / FADE + 2 * LSB)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


class Finished:
    """Records on_finished calls and what the output had written at that moment."""

    def __init__(self, output: WavFileOutput | None = None) -> None:
        self.calls: list[bool] = []
        self.frames: list[int] = []
        self.at: list[float] = []
        self._output = output
        self._event = threading.Event()

    def __call__(self, ok: bool) -> None:
        self.calls.append(ok)
        self.frames.append(self._output.frames_written if self._output else -1)
        self.at.append(time.monotonic())
        self._event.set()

    def wait(self) -> list[bool]:
        assert self._event.wait(TIMEOUT), "on_finished never came"
        return self.calls


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., tuple[Player, WavFileOutput]]]:
    players: list[Player] = []

    def factory(realtime: bool = False, **config: object) -> tuple[Player, WavFileOutput]:
        output = WavFileOutput(tmp_path / f"out{len(players)}.wav", realtime=realtime)
        player = Player(AudioConfig(**config), output)  # type: ignore[arg-type]
        players.append(player)
        return player, output

    yield factory
    for player in players:
        player.close()


def played(player: Player, output: WavFileOutput) -> np.ndarray:
    player.close()
    audio, rate = sf.read(output.path, dtype="float32")
    assert rate == SAMPLE_RATE
    return audio


# -- with the in-process WAV output ------------------------------------------------


@pytest.mark.fast
def test_a_tone_plays_end_to_end_and_finishes_once_after_the_last_sample(make) -> None:
    player, output = make(volume=0.8)
    x = tone(1.5)
    done = Finished(output)
    player.play(chunked(x, 7001), on_finished=done)
    assert done.wait() == [True]
    assert done.frames == [len(x)], "on_finished(True) came before all audio was written"
    time.sleep(0.3)
    assert done.calls == [True] and not player.is_playing
    assert player.position == pytest.approx(1.5)
    y = played(player, output)
    assert len(y) == len(x)
    np.testing.assert_allclose(y, 0.8 * faded(x), atol=2 * LSB)


@pytest.mark.fast
def test_progress_comes_about_once_a_second_and_the_end_only_after_the_audio_was_heard(make) -> None:
    player, output = make(realtime=True)
    x = tone(2.3)
    done, progress = Finished(output), []
    player.play([x], on_finished=done, on_progress=lambda pos: progress.append((time.monotonic(), pos)))
    assert done.wait() == [True]
    assert done.frames[0] >= len(x), "the end came before the last sample was written"
    assert len(progress) >= 2
    positions = [pos for _, pos in progress]
    assert positions == sorted(positions) and 0 < positions[0] <= positions[-1] <= 2.3
    gaps = np.diff([at for at, _ in progress])
    # Never more often than about once a second (a busy machine only makes the gaps longer).
    assert all(gap > 0.7 for gap in gaps), gaps


@pytest.mark.fast
def test_pause_and_resume_continue_where_it_was_with_fades_and_no_click(make) -> None:
    player, output = make(realtime=True, volume=0.8)
    x = tone(2.0)
    done = Finished(output)
    player.play(chunked(x), on_finished=done)
    wait_until(lambda: player.position >= 0.6)
    assert player.pause() and player.is_paused and not player.is_playing
    paused_at = round(player.position * SAMPLE_RATE)
    written = output.frames_written
    wait_until(lambda: output.frames_written >= written + 0.4 * SAMPLE_RATE)  # the card went on: silence
    assert round(player.position * SAMPLE_RATE) == paused_at, "position moved while paused"
    assert player.resume() and player.is_playing
    assert done.wait() == [True]
    y = played(player, output)

    first = int(np.argmax(y != 0))
    before = y[first : first + paused_at]
    fade_out = np.linspace(1.0, 0.0, FADE + 1, dtype=np.float32)[1:]
    expected = 0.8 * x[:paused_at].copy()
    expected[:FADE] *= ramp_up()
    expected[-FADE:] *= fade_out
    np.testing.assert_allclose(before, expected, atol=2 * LSB)  # fade-in, then the fade-out into the pause

    back = first + paused_at + int(np.argmax(y[first + paused_at :] != 0))
    assert back - (first + paused_at) >= 0.3 * SAMPLE_RATE, "no silence while paused"
    rest = len(x) - paused_at
    np.testing.assert_allclose(y[back : back + rest], 0.8 * faded(x[paused_at:]), atol=2 * LSB)
    assert not y[back + rest :].any(), "more audio than the source had"

    near = y[first + paused_at - 2 * FADE : back + 2 * FADE]
    assert np.abs(np.diff(near)).max() <= smooth_step(x, 0.8), "a click at the pause or the resume"
    assert np.abs(np.diff(y)).max() <= smooth_step(x, 0.8), "a click somewhere"


@pytest.mark.fast
def test_stop_fades_out_and_reports_not_finished(make) -> None:
    player, output = make(realtime=True, volume=0.8)
    x = tone(3.0)
    done = Finished()
    player.play(chunked(x), on_finished=done)
    wait_until(lambda: player.position >= 0.3)
    player.stop()
    assert not player.is_playing and not player.is_paused
    assert done.wait() == [False]
    time.sleep(0.2)
    assert done.calls == [False]
    stopped_at = player.position * SAMPLE_RATE  # frames handed out, the fade-out included
    y = played(player, output)
    heard = np.count_nonzero(y)
    assert 0.3 * SAMPLE_RATE < heard < len(x), "stop did not stop the story"
    assert heard == pytest.approx(stopped_at, abs=2), "sound went on after the fade-out"
    assert np.abs(np.diff(y)).max() <= smooth_step(x, 0.8), "stop clicked"


@pytest.mark.fast
def test_a_new_story_replaces_the_old_one(make) -> None:
    player, output = make(realtime=True)
    first, second = Finished(), Finished()
    player.play(chunked(tone(3.0)), on_finished=first)
    wait_until(lambda: player.position >= 0.3)
    player.play([tone(0.5, freq=440)], on_finished=second)
    assert first.wait() == [False]
    assert second.wait() == [True]
    assert first.at[0] <= second.at[0]
    y = played(player, output)
    last = np.nonzero(y)[0][-1]
    assert dominant(y[last - 6000 : last]) == pytest.approx(440, abs=5)


@pytest.mark.fast
def test_volume_is_never_above_the_limit(make) -> None:
    player, output = make(max_volume=0.5, volume=0.9)  # a start volume above the limit is clamped
    assert player.set_volume(5) == 0.5
    assert player.set_volume(-1) == 0.0
    assert player.set_volume(float("nan")) == 0.0  # NaN keeps what was set
    assert player.set_volume(0.3) == pytest.approx(0.3)
    assert player.set_volume(5) == 0.5
    x = np.sign(tone(1.0, amp=1.0, offset=0.0)).astype(np.float32)  # full-scale square wave
    done = Finished()
    player.chime()  # mixed on top: the sum must still be limited
    player.play(chunked(x), on_finished=done)
    assert done.wait() == [True]
    y = played(player, output)
    assert np.abs(y).max() <= 0.5 * np.abs(x).max() + LSB
    assert np.abs(y).max() >= 0.49
    with pytest.raises(pydantic.ValidationError):
        AudioConfig(max_volume=1.5)
    with pytest.raises(pydantic.ValidationError):
        AudioConfig(volum=0.3)  # type: ignore[call-arg]


@pytest.mark.fast
def test_start_at_skips_what_the_child_already_heard(make) -> None:
    player, output = make(volume=0.8)
    x = (0.5 * np.random.default_rng(7).uniform(-1, 1, 3 * SAMPLE_RATE)).astype(np.float32)
    done = Finished()
    player.play(chunked(x, 7000), on_finished=done, start_at=1.0)
    assert done.wait() == [True]
    assert player.position == pytest.approx(3.0)  # counted from the story's beginning
    y = played(player, output)
    assert len(y) == 2 * SAMPLE_RATE
    np.testing.assert_allclose(y, 0.8 * faded(x[SAMPLE_RATE:]), atol=2 * LSB)


@pytest.mark.fast
def test_a_slow_source_blocks_neither_pause_nor_stop_and_is_let_go(make) -> None:
    player, output = make(realtime=True)
    gate, closed = threading.Event(), threading.Event()

    def slow() -> Iterator[np.ndarray]:
        try:
            yield tone(0.3)
            gate.wait(30)  # synthesis taking its time
            yield tone(0.3)
        finally:
            closed.set()

    done = Finished()
    source = slow()  # held here, so only the player closing it runs its finally
    player.play(source, on_finished=done)
    wait_until(lambda: player.position >= 0.3)
    written = output.frames_written
    wait_until(lambda: output.frames_written >= written + 0.3 * SAMPLE_RATE)  # the card went on: silence
    assert player.position == pytest.approx(0.3) and player.is_playing, "position moved during an underrun"
    for action in (player.pause, player.resume, player.stop):
        # The source stays blocked until the gate opens (30 s): an action that waited on it would not return.
        worker = threading.Thread(target=action, daemon=True)
        worker.start()
        worker.join(TIMEOUT)
        assert not worker.is_alive(), f"{action.__name__} waited on the source"
    assert done.wait() == [False]
    gate.set()
    assert closed.wait(TIMEOUT), "the stopped source was never closed"


@pytest.mark.fast
def test_a_failing_or_malformed_source_plays_what_came_then_reports_not_finished(make, caplog) -> None:
    player, output = make()

    def failing() -> Iterator[np.ndarray]:
        yield tone(0.5)
        raise RuntimeError("synthesis died")

    for source in (failing(), iter([tone(0.5), np.zeros((100, 2), np.float32)])):
        done = Finished(output)
        with caplog.at_level(logging.ERROR, logger="hearmylove.audio"):
            player.play(source, on_finished=done)
            assert done.wait() == [False]
        assert "audio source failed" in caplog.text
    assert output.frames_written == 2 * round(0.5 * SAMPLE_RATE)


@pytest.mark.fast
def test_the_chime_is_heard_over_a_story(make) -> None:
    player, output = make(realtime=True, volume=0.8)
    done = Finished()
    player.play([tone(1.5, freq=220)], on_finished=done)
    wait_until(lambda: player.position >= 0.4)
    assert player.chime()
    assert done.wait() == [True]
    y = played(player, output)
    start = int(np.argmax(y != 0))
    windows = [y[i : i + 2400] for i in range(start, start + int(1.4 * SAMPLE_RATE), 2400)]
    notes = [max(amplitude(w, 659.25), amplitude(w, 987.77)) for w in windows]
    story = [amplitude(w, 220) for w in windows]
    assert max(notes[:3]) < 0.01, "chime before it was asked for"
    assert max(notes) > 0.1, f"chime not heard: {max(notes):.3f}"
    assert min(story[1:]) > 0.1, "the story stopped under the chime"


@pytest.mark.fast
def test_the_chime_alone_and_switched_off(make) -> None:
    player, output = make()
    assert player.chime()
    wait_until(lambda: output.frames_written >= 9600)
    quiet, quiet_out = make(chime=False)
    assert not quiet.chime()
    time.sleep(0.2)
    assert quiet_out.frames_written == 0
    y = played(player, output)
    assert len(y) == 9600
    assert dominant(y[:3000]) == pytest.approx(659.25, abs=5)
    assert dominant(y[4000:]) == pytest.approx(987.77, abs=5)


@pytest.mark.fast
def test_a_failing_callback_is_logged_and_the_player_goes_on(make, caplog) -> None:
    player, _ = make()

    def broken(ok: bool) -> None:
        raise ValueError("bug in the controller")

    with caplog.at_level(logging.ERROR, logger="hearmylove.audio"):
        player.play([tone(0.2)], on_finished=broken)
        done = Finished()
        wait_until(lambda: "bug in the controller" in caplog.text)
        player.play([tone(0.2)], on_finished=done)
        assert done.wait() == [True]
    player.close()
    with pytest.raises(AudioError, match="closed"):
        player.play([tone(0.1)])


# -- the pure core -------------------------------------------------------------------


@pytest.mark.fast
def test_the_ring_buffer_keeps_order_across_the_wrap() -> None:
    rng = np.random.default_rng(1)
    ring, source, sink, pos = RingBuffer(1000), np.arange(20_000, dtype=np.float32), [], 0
    while pos < len(source) or ring.available:
        pos += ring.write(source[pos : pos + int(rng.integers(0, 700))])
        out = np.zeros(int(rng.integers(0, 700)), np.float32)
        sink.append(out[: ring.read_into(out)])
    np.testing.assert_array_equal(np.concatenate(sink), source)


@pytest.mark.fast
def test_an_underrun_is_silence_and_the_position_waits() -> None:
    mixer = Mixer(AudioConfig(volume=1.0, max_volume=1.0))
    gen, _ = mixer.start()
    mixer.write(gen, np.full(3000, 0.5, np.float32))
    out = np.zeros((2048, 1), np.float32)
    assert mixer.fill(out) == 2048
    assert mixer.fill(out) == 952 and not out[952:].any()
    assert out[951, 0] == 0.0 and out[0, 0] > out[900, 0]  # faded out to nothing, not cut
    assert mixer.position_frames == 3000
    assert mixer.fill(out) == 0 and not out.any() and mixer.position_frames == 3000
    mixer.write(gen, np.full(3000, 0.5, np.float32))
    mixer.fill(out)
    np.testing.assert_allclose(out[:FADE, 0], 0.5 * ramp_up(), atol=1e-6)  # comes back with a fade-in


class ManualOutput:
    """An output the test clocks by hand: each pull() is one callback from the sound card."""

    latency = 0.0

    def start(self, mixer: Mixer) -> None:
        self.mixer = mixer

    def pull(self, frames: int = 1024) -> np.ndarray:
        out = np.zeros((frames, 1), np.float32)
        self.mixer.fill(out)
        return out[:, 0]

    def close(self) -> None:
        pass


@pytest.mark.fast
def test_the_end_is_reported_only_once_the_card_took_the_last_block() -> None:
    output = ManualOutput()
    with Player(AudioConfig(), output) as player:
        done = Finished()
        player.play([tone(0.1)], on_finished=done)  # 2400 frames
        wait_until(lambda: output.mixer.wait_ready(1024, 0))
        for _ in range(3):
            output.pull()
        time.sleep(0.3)
        assert done.calls == [], "finished before the card asked for the next block"
        assert not player.is_playing
        output.pull()
        assert done.wait() == [True]


@pytest.mark.fast
def test_nothing_is_louder_than_max_volume_even_a_chime_over_a_too_loud_source() -> None:
    output = ManualOutput()
    with Player(AudioConfig(max_volume=0.5, volume=0.5), output) as player:
        player.play([np.full(SAMPLE_RATE, 2.0, np.float32)])  # a broken source, twice full scale
        wait_until(lambda: output.mixer.wait_ready(1024, 0))
        first = output.pull()
        player.chime()
        rest = np.concatenate([output.pull() for _ in range(10)])
    assert np.abs(first).max() <= 0.5 and np.abs(rest).max() <= 0.5
    assert np.abs(rest).max() == 0.5


# -- the real PortAudio, playing into an ALSA file PCM -------------------------------

_REAL_SCRIPT = """
import json, sys, threading, time
import numpy as np
import sounddevice as sd
from hearmylove.audio import AudioConfig, Player, SoundDeviceOutput
t = np.arange(24000) / 24000
x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
done, result = threading.Event(), []
output = SoundDeviceOutput(AudioConfig())
began = time.monotonic()
with Player(AudioConfig(volume=0.5), output) as player:
    player.play([x], on_finished=lambda ok: (result.append(ok), done.set()))
    done.wait(20)
    took = time.monotonic() - began
open_for = time.monotonic() - began
devices = [{"name": d["name"], "out": d["max_output_channels"]} for d in sd.query_devices()]
print(json.dumps({"devices": devices, "default_name": sd.query_devices(kind="output")["name"],
                  "finished": result, "took": took, "open_for": open_for, "paced": output.pace}))
"""


def _require_portaudio() -> None:
    if ctypes.util.find_library("portaudio") is None:
        pytest.fail("PortAudio is missing; install it with: apt-get install libportaudio2")


def test_a_tone_goes_through_the_real_portaudio_into_an_alsa_file(tmp_path: Path) -> None:
    _require_portaudio()
    raw = tmp_path / "out.raw"
    env = {**os.environ, **alsa_file_config(raw, tmp_path / "asound.conf")}
    run = subprocess.run([sys.executable, "-c", _REAL_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["finished"] == [True]
    # finished == [True] above: it ended within the script's 20 s wait. A busy machine only makes it later.
    assert report["paced"] and report["took"] >= 0.95, "the file sink was not held to real time"
    assert report["default_name"] == "default"
    assert any(d["name"] == "default" and d["out"] > 0 for d in report["devices"]), report["devices"]

    y = read_alsa_raw(raw)
    assert len(y) / SAMPLE_RATE < report["open_for"] + 1.0, "the sink ran faster than real time"
    loud = np.nonzero(np.abs(y) > 0.01)[0]
    assert len(loud), "nothing reached the ALSA file"
    heard = y[loud[0] : loud[-1] + 1]
    assert len(heard) / SAMPLE_RATE == pytest.approx(1.0, abs=0.01)
    assert dominant(heard) == pytest.approx(440, abs=5)
    assert np.abs(heard).max() == pytest.approx(0.25, abs=0.01)  # 0.5 at volume 0.5


def test_missing_portaudio_names_the_package_to_install() -> None:
    script = (
        "import ctypes.util; ctypes.util.find_library = lambda name: None\n"
        "from hearmylove.audio import SoundDeviceOutput, Player\n"
        "Player(output=SoundDeviceOutput())\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "AudioError" in run.stderr and "apt-get install libportaudio2" in run.stderr


@pytest.mark.fast
def test_an_alsa_config_path_that_alsa_cannot_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="ALSA config"):
        alsa_file_config(tmp_path / 'a"b.raw', tmp_path / "asound.conf")
    assert not (tmp_path / "asound.conf").exists()
