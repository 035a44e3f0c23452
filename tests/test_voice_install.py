"""A family's voice arrives over MQTT as a signed pack, is installed, and tells stories;
tampered and foreign packs are refused with a message a technician understands."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove.remote import Remote
from hearmylove.voicepack import Consent
from voicelab.pack import build_pack, generate_key, load_signing_key, public_key_base64

from .rigs import running_daemon

DEVICE, PARENT = "kid-009", "ma"


def make_pack(tmp: Path, key: Path, model_dir: Path, engine: Engine, name: str = "mama") -> bytes:
    style = engine.voices.get("jf_alpha").styles[60]  # one row, as a cloned voice has
    consent = Consent(
        recorded_by="Ma",
        recorded_at=datetime(2026, 11, 1, tzinfo=UTC),
        device_id=DEVICE,
        statement="I agree that this speaker tells stories in my voice.",
    )
    out = tmp / f"{name}-{len(list(tmp.glob('*.tar')))}.tar"
    build_pack(np.asarray(style, np.float32), name, "Mama", ["en", "zh"], consent, {}, model_dir, key, out)
    return out.read_bytes()


@pytest.fixture
def rig(tmp_path: Path, engine: Engine, model_dir: Path) -> Iterator[tuple[Daemon, Remote, Path]]:
    key = tmp_path / "studio.key"
    generate_key(key)
    with running_daemon(tmp_path, engine, DEVICE, PARENT, trusted_keys=[public_key_base64(load_signing_key(key))]) as r:
        yield r.daemon, r.parent, key


def send_pack(ma: Remote, data: bytes) -> object:
    return ma.send(DEVICE, "voice.install", pack=base64.b64encode(data).decode())


def test_a_signed_pack_installs_and_tells_the_next_story(
    rig: tuple[Daemon, Remote, Path], tmp_path: Path, model_dir: Path, engine: Engine
) -> None:
    daemon, ma, key = rig
    reply = send_pack(ma, make_pack(tmp_path, key, model_dir, engine))
    assert reply.ok and reply.result == {"voice_id": "mama", "display_name": "Mama", "active": True}, reply
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
