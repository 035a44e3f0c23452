"""End to end: a real Mosquitto, the real daemon process, real models, PortAudio into a file.

A parent sends a story and hears (through Whisper) that it was told; the speaker is
switched off and on while commands wait; the broker restarts mid-story.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearmylove.audio import read_alsa_raw
from hearmylove.broker import Account, LocalBroker
from hearmylove.errors import BrokerError
from hearmylove.remote import Remote
from voicelab.judge import transcribe, wer

from .rigs import Speaker, drained

DEVICE, PARENT = "kid-001", "mum"
STORY = "Once upon a time, a little fox found a shiny red apple. He shared it with his friend the rabbit."


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    accounts = [
        Account(DEVICE, "device-secret"),
        Account(PARENT, "parent-secret", devices=(DEVICE,)),
        Account("other-parent", "other-secret", devices=("kid-002",)),
    ]
    with LocalBroker(tmp_path / "broker", accounts) as running:
        yield running


@pytest.fixture
def speaker(tmp_path: Path, broker: LocalBroker, model_dir: Path) -> Iterator[Speaker]:
    s = Speaker(tmp_path, broker)
    s.start()
    yield s
    s.stop()
    if s.process and s.process.returncode not in (0, None):
        print(s.log())


def parent(broker: LocalBroker) -> Remote:
    return Remote("127.0.0.1", broker.port, PARENT, "parent-secret").connect()


def online(remote: Remote) -> None:
    while remote.wait_for("availability", timeout=60, device_id=DEVICE).payload != "online":
        pass


def test_a_parent_sends_a_story_and_the_child_hears_it(broker: LocalBroker, speaker: Speaker) -> None:
    with parent(broker) as mum:
        online(mum)
        put = mum.send(DEVICE, "story.put", story_id="fox", title="The Fox", text=STORY, lang="en")
        assert put.ok, put
        tell = mum.send(DEVICE, "story.tell", story_id="fox")
        assert tell.ok, tell
        started = mum.wait_for("event", "story.started", timeout=120)
        assert started.payload["story_id"] == "fox"
        finished = mum.wait_for("event", "story.finished", timeout=180)
        assert finished.payload["title"] == "The Fox"
        listing = mum.send(DEVICE, "story.list")
        assert listing.result["stories"][0]["times_finished"] == 1
    speaker.stop()
    audio = read_alsa_raw(speaker.raw)
    assert len(audio) > 24_000 * 4, "the story went through PortAudio into the ALSA file"
    heard = transcribe(audio, 24_000, "en")
    assert wer(STORY, heard) <= 0.15, heard


def test_bad_commands_get_error_replies_and_the_daemon_lives_on(broker: LocalBroker, speaker: Speaker) -> None:
    with parent(broker) as mum:
        online(mum)
        mum.publish(DEVICE, "story.put", b"{this is not json")
        error = mum.wait_for("event", "error", timeout=30)
        assert error.payload["code"] == "bad_json" and error.payload["command"] == "story.put"
        reply = mum.send(DEVICE, "volume.set", volume="loud")
        assert not reply.ok and "volume" in reply.error.message  # type: ignore[union-attr]
        reply = mum.send(DEVICE, "story.put", story_id="big", title="Big", text="word " * 20_000)
        assert reply.error.code == "too_large"  # type: ignore[union-attr]
        reply = mum.send(DEVICE, "story.dance")
        assert reply.error.code == "unknown_command"  # type: ignore[union-attr]
        assert mum.send(DEVICE, "ping").result["pong"] is True
    assert speaker.process is not None and speaker.process.poll() is None


def test_commands_sent_while_the_speaker_is_off_arrive_and_run_once(broker: LocalBroker, speaker: Speaker) -> None:
    with parent(broker) as mum:
        online(mum)
        assert mum.send(DEVICE, "story.put", story_id="owl", title="Owl", text="The owl said hello.", lang="en").ok
        speaker.stop()
        while mum.wait_for("availability", timeout=30, device_id=DEVICE).payload != "offline":
            pass
        command = json.dumps({"id": "tell-while-away", "story_id": "owl"})
        mum.publish(DEVICE, "story.tell", command)
        mum.publish(DEVICE, "story.tell", command)  # the same id again
        speaker.start()
        online(mum)
        first = mum.wait_for("reply", "tell-while-away", timeout=120)
        second = mum.wait_for("reply", "tell-while-away", timeout=60)
        assert first.payload["ok"] and second.payload["result"].get("duplicate") is True
        mum.wait_for("event", "story.finished", timeout=180)  # passes over the one story.started
        # The speaker answers in order: once this reply is here, a second telling would have shown.
        listing = mum.send(DEVICE, "story.list")
        assert listing.result["stories"][0]["times_finished"] == 1
        assert not [m for m in drained(mum) if (m.kind, m.name) == ("event", "story.started")]


def test_a_broker_restart_mid_story_does_not_stop_the_story(broker: LocalBroker, speaker: Speaker) -> None:
    long_story = " ".join(["The little boat sailed on and on across the calm blue sea."] * 6)
    with parent(broker) as mum:
        online(mum)
        assert mum.send(DEVICE, "story.tell", text=long_story, title="Boat", lang="en").ok
        mum.wait_for("event", "story.started", timeout=120)
        broker.restart()
        # Playback goes on; the link comes back and the state is published again.
        state = mum.wait_for("state", timeout=60)
        assert state.payload["state"] in ("playing", "idle")
        mum.wait_for("event", "story.finished", timeout=240)
    assert speaker.process is not None and speaker.process.poll() is None
    assert speaker.log().count("connected to 127.0.0.1") >= 2, "the link came back after the restart"


def test_another_family_cannot_command_this_speaker(broker: LocalBroker, speaker: Speaker) -> None:
    with parent(broker) as mum:
        online(mum)
        with Remote("127.0.0.1", broker.port, "other-parent", "other-secret") as stranger:
            stranger.publish(DEVICE, "ping", json.dumps({"id": "intruder"}))  # returns once the broker has it
        # The speaker answers in order: the family's ping comes after the stranger's, so its reply
        # proves that a reply to the stranger would already be here.
        assert mum.send(DEVICE, "ping").ok, "the family's own commands still work"
        assert not [m for m in drained(mum) if m.kind == "reply" and m.name == "intruder"]
    with pytest.raises(BrokerError, match="refused"):
        Remote("127.0.0.1", broker.port, "stranger", "wrong").connect(timeout=5)


def test_the_demo_tells_a_story_into_a_file(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "told.wav"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hearmylove"), "demo", "--text", STORY, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "story.finished" in result.stderr
    import soundfile as sf

    audio, rate = sf.read(str(out), dtype="float32")
    assert wer(STORY, transcribe(audio, rate, "en")) <= 0.15


def test_the_remote_cli_sends_tells_and_waits_until_the_end(broker: LocalBroker, speaker: Speaker) -> None:
    cli = [str(Path(sys.executable).parent / "hearmylove-remote")]
    conn = ["--broker", "127.0.0.1", "--port", str(broker.port), "--no-tls", "--user", PARENT]
    env = {**os.environ, "HML_PASSWORD": "parent-secret"}

    def remote(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, *conn], capture_output=True, text=True, timeout=300, env=env)

    with parent(broker) as mum:
        online(mum)
    put = remote("put", DEVICE, "--title", "Owl", "--text", "The owl said good night.", "--story-id", "owl")
    assert put.returncode == 0, put.stderr
    told = remote("tell", DEVICE, "--story-id", "owl", "--wait", "--timeout", "120")
    assert told.returncode == 0, told.stderr
    assert "story.started" in told.stdout and "story.finished" in told.stdout
    listing = remote("list", DEVICE, "--json")
    assert json.loads(listing.stdout)["result"]["stories"][0]["times_finished"] == 1
    quiet = remote("settings", DEVICE, "--quiet", "00:00-23:59", "--max-volume", "0.5")
    assert quiet.returncode == 0, quiet.stderr
    refused = remote("tell", DEVICE, "--story-id", "owl")
    assert refused.returncode == 1 and "quiet_hours" in refused.stderr
    wrong = subprocess.run(
        [*cli, "ping", DEVICE, *conn],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HML_PASSWORD": "nope"},
    )
    assert wrong.returncode == 2 and "refused the login" in wrong.stderr


def test_the_daemon_tells_systemd_it_is_ready_and_alive(tmp_path: Path, broker: LocalBroker, model_dir: Path) -> None:
    import socket

    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(120)
    speaker = Speaker(tmp_path, broker)
    speaker.env["NOTIFY_SOCKET"] = str(notify)
    speaker.start()
    try:
        messages = [sock.recv(256).decode() for _ in range(2)]
        assert messages == ["READY=1", "WATCHDOG=1"]
        speaker.stop()
        assert sock.recv(256).decode() == "STOPPING=1"
    finally:
        speaker.stop()
        sock.close()
