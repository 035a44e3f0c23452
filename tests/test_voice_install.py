"""A family's voice arrives over MQTT as a signed pack, is installed, and tells stories;
tampered and foreign packs are refused with a message a technician understands."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hearmylove.broker import Account
from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove.remote import Remote
from hearmylove.voicepack import Consent
from voicelab.pack import build_pack, generate_key, load_signing_key, public_key_base64

from .rigs import running_daemon

DEVICE, PARENT = "kid-009", "ma"
OTHER_PARENT = Account("pa", "pa-secret", devices=(DEVICE,))
"""The CLI logs in as its own account: one connection per account."""


def make_pack(
    tmp: Path, key: Path, model_dir: Path, engine: Engine, name: str = "mama", device: str = DEVICE, row: int = 60
) -> bytes:
    style = engine.voices.get("jf_alpha").styles[row]  # one row, as a cloned voice has
    consent = Consent(
        recorded_by="Ma",
        recorded_at=datetime(2026, 11, 1, tzinfo=UTC),
        device_id=device,
        statement="I agree that this speaker tells stories in my voice.",
    )
    out = tmp / f"{name}-{len(list(tmp.glob('*.tar')))}.tar"
    build_pack(np.asarray(style, np.float32), name, "Mama", ["en", "zh"], consent, {}, model_dir, key, out)
    return out.read_bytes()


@pytest.fixture
def rig(tmp_path: Path, engine: Engine, model_dir: Path) -> Iterator[tuple[Daemon, Remote, Path]]:
    key = tmp_path / "studio.key"
    generate_key(key)
    trusted = [public_key_base64(load_signing_key(key))]
    with running_daemon(tmp_path, engine, DEVICE, PARENT, (OTHER_PARENT,), trusted_keys=trusted) as r:
        yield r.daemon, r.parent, key


def send_pack(ma: Remote, data: bytes) -> object:
    return ma.send(DEVICE, "voice.install", pack=base64.b64encode(data).decode())


def wait_active(ma: Remote, voice: str | None) -> None:
    """The retained state names the active voice (older states may come first)."""
    while ma.wait_for("state", timeout=30, device_id=DEVICE).payload["active_voice"] != voice:
        pass


def test_a_signed_pack_installs_and_tells_the_next_story(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, ma, key = rig
    reply = send_pack(ma, make_pack(tmp_path, key, model_dir, engine))
    assert reply.ok, reply
    assert {k: reply.result[k] for k in ("voice_id", "display_name", "active", "recorded_by", "device_id")} == {
        "voice_id": "mama",
        "display_name": "Mama",
        "active": True,
        "recorded_by": "Ma",
        "device_id": DEVICE,
    }
    assert reply.result["recorded_at"].startswith("2026-11-01")
    assert ma.send(DEVICE, "ping").result["voices"] == ["mama"]
    assert ma.send(DEVICE, "story.put", story_id="owl", title="Owl", text="The owl said good night.").ok
    assert daemon.renderer.voice(daemon.library.get("owl")).id == "mama"  # type: ignore[arg-type]
    # A second pack under the same id keeps the first until a story in it has played.
    assert send_pack(ma, make_pack(tmp_path, key, model_dir, engine)).ok
    assert (daemon.voices.folder / "mama.previous").exists()
    assert ma.send(DEVICE, "story.tell", story_id="owl").ok
    ma.wait_for("event", "story.finished", timeout=120)
    ma.send(DEVICE, "ping")  # the finished event is handled before the next command
    assert not (daemon.voices.folder / "mama.previous").exists()


def test_tampered_and_foreign_packs_are_refused(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, ma, key = rig
    good = bytearray(make_pack(tmp_path, key, model_dir, engine))
    bad = bytearray(good)
    at = bytes(good).index(b"NUMPY") + 200  # inside style.npy's floats
    bad[at] ^= 0x01
    reply = send_pack(ma, bytes(bad))
    assert not reply.ok and "tampered" in reply.error.message  # type: ignore[union-attr]
    other = tmp_path / "other.key"
    generate_key(other)
    reply = send_pack(ma, make_pack(tmp_path, other, model_dir, engine, name="stranger"))
    assert not reply.ok and "does not match any" in reply.error.message  # type: ignore[union-attr]
    reply = ma.send(DEVICE, "voice.install", pack="not base64 at all!")
    assert not reply.ok and "base64" in reply.error.message  # type: ignore[union-attr]
    assert daemon.voices.ids() == []


def test_a_pack_made_for_another_speaker_is_refused_naming_both(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, ma, key = rig
    assert send_pack(ma, make_pack(tmp_path, key, model_dir, engine)).ok
    before = sorted(p.name for p in daemon.voices.folder.iterdir())
    reply = send_pack(ma, make_pack(tmp_path, key, model_dir, engine, name="stranger", device="kid-999"))
    assert not reply.ok and reply.error is not None
    assert "'kid-999'" in reply.error.message and f"'{DEVICE}'" in reply.error.message, reply.error.message
    assert sorted(p.name for p in daemon.voices.folder.iterdir()) == before  # nothing unpacked, nothing left
    assert ma.send(DEVICE, "voice.list").result["active_voice"] == "mama"


def test_the_parent_chooses_lists_and_rolls_back_voices(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, ma, key = rig
    assert send_pack(ma, make_pack(tmp_path, key, model_dir, engine, row=60)).ok
    first = daemon.voices.resolve("mama", "en").digest
    assert send_pack(ma, make_pack(tmp_path, key, model_dir, engine, row=90)).result["previous"] is True
    assert daemon.voices.resolve("mama", "en").digest != first
    listed = ma.send(DEVICE, "voice.list").result
    assert listed["active_voice"] == "mama" and [v["voice_id"] for v in listed["voices"]] == ["mama"]
    assert listed["voices"][0]["previous"] and listed["voices"][0]["statement"].startswith("I agree")
    # Back to the version the new one replaced: the same voice as before, active still.
    back = ma.send(DEVICE, "voice.rollback")
    assert back.ok and back.result["voice_id"] == "mama" and back.result["previous"] is False, back
    assert daemon.voices.resolve("mama", "en").digest == first
    again = ma.send(DEVICE, "voice.rollback")
    assert not again.ok and again.error is not None and "no earlier version" in again.error.message
    # The speaker's own voice, then the family's again; the retained state says which.
    assert ma.send(DEVICE, "voice.select", voice=None).result == {"active_voice": None}
    wait_active(ma, None)
    assert ma.send(DEVICE, "voice.select", voice="mama").ok
    wait_active(ma, "mama")
    unknown = ma.send(DEVICE, "voice.select", voice="grandma")
    assert not unknown.ok and unknown.error is not None and unknown.error.code == "not_found"
    # One story in a stock voice, told inline; a story put in an unknown voice is refused.
    told = ma.send(DEVICE, "story.tell", text="Good night.", lang="en", voice="jf_alpha")
    assert told.ok and daemon.library.get(told.result["story_id"]).voice == "jf_alpha"  # type: ignore[union-attr]
    refused = ma.send(DEVICE, "story.put", story_id="x", title="X", text="Hello.", voice="grandma")
    assert not refused.ok and refused.error is not None and "no voice 'grandma'" in refused.error.message


def remote_cli(rig: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """`hearmylove-remote` as a parent runs it, logged in as the family's other parent."""
    port = str(rig.config.mqtt.port)
    conn = ["--broker", "127.0.0.1", "--port", port, "--no-tls", "--user", OTHER_PARENT.username]
    env = {**os.environ, "HML_PASSWORD": OTHER_PARENT.password}
    cli = str(Path(sys.executable).parent / "hearmylove-remote")
    return subprocess.run([cli, *args, *conn], capture_output=True, text=True, env=env, timeout=300)


def test_the_remote_cli_installs_lists_uses_and_rolls_back_voices(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, _, key = rig
    (tmp_path / "mine.tar").write_bytes(make_pack(tmp_path, key, model_dir, engine, row=60))
    (tmp_path / "newer.tar").write_bytes(make_pack(tmp_path, key, model_dir, engine, row=90))
    (tmp_path / "theirs.tar").write_bytes(make_pack(tmp_path, key, model_dir, engine, device="kid-999"))
    done = remote_cli(daemon, "voice", "install", DEVICE, str(tmp_path / "mine.tar"))
    assert done.returncode == 0, done.stderr
    assert "sending the pack" in done.stderr and "checking the pack" in done.stderr
    assert done.stdout.strip() == f"installed Mama (mama): recorded by Ma on 2026-11-01 for speaker {DEVICE} (active)"
    theirs = remote_cli(daemon, "voice", "install", DEVICE, str(tmp_path / "theirs.tar"))
    assert theirs.returncode == 1 and "'kid-999'" in theirs.stderr and f"'{DEVICE}'" in theirs.stderr
    assert remote_cli(daemon, "voice", "install", DEVICE, str(tmp_path / "newer.tar")).returncode == 0
    listed = remote_cli(daemon, "voice", "list", DEVICE)
    assert "Mama (mama)" in listed.stdout and "previous version kept" in listed.stdout
    assert "active voice: mama" in listed.stdout
    back = remote_cli(daemon, "voice", "rollback", DEVICE)
    assert back.returncode == 0 and back.stdout.startswith("back to the earlier version of Mama (mama)"), back
    stock = remote_cli(daemon, "voice", "use", DEVICE, "--stock")
    assert stock.returncode == 0 and "own (stock) voice" in stock.stdout and daemon.library.settings()["voice"] is None
    assert remote_cli(daemon, "voice", "use", DEVICE, "mama").stdout.strip() == "active voice: mama"
    bad = remote_cli(daemon, "put", DEVICE, "--title", "Owl", "--text", "Hello.", "--voice", "grandma")
    assert bad.returncode == 1 and "no voice 'grandma'" in bad.stderr
    missing = remote_cli(daemon, "voice", "install", DEVICE, str(tmp_path / "nowhere.tar"))
    assert missing.returncode == 2 and "cannot read the voice pack" in missing.stderr
