"""Packs built to hurt: nothing is written before the signature checks out, huge or deep tars
cost a few headers to refuse, tar modes never reach the disk, leftovers are swept, and an
install never holds up the speaker's other commands."""

from __future__ import annotations

import base64
import io
import tarfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hearmylove.engine.engine import Engine
from hearmylove.errors import VoicePackError
from hearmylove.remote import Remote
from hearmylove.voicepack import MAX_MEMBERS, install_pack, load_voice, unpack
from hearmylove.voicestore import VoiceStore
from voicelab.pack import generate_key, load_signing_key, public_key_base64

from . import test_voicepack as packs
from .rigs import running_daemon
from .test_voicepack import BASE_SHA, as_python_3_11_2, make_pack, snapshot

base_dir, key, trusted, voices = packs.base_dir, packs.key, packs.trusted, packs.voices  # the same fixtures

PACK_FILES = ("manifest.json", "manifest.sig", "style.npy")


def tar_of(folder: Path, out: Path, before: Iterable[tarfile.TarInfo] = (), mode: int = 0o644, skip: str = "") -> Path:
    """A tar of a folder pack, with extra members first and the pack's files at `mode`."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info in before:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
        for name in PACK_FILES:
            if name != skip:
                data = (folder / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return out


def files(count: int) -> Iterator[tarfile.TarInfo]:
    for n in range(count):
        yield tarfile.TarInfo(f"f{n:06d}")


@pytest.mark.parametrize("spoil", ["signed by another studio", "unsigned", "manifest edited"])
def test_nothing_is_written_before_the_signature_checks_out(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], spoil: str
) -> None:
    signer = key
    if spoil == "signed by another studio":
        signer = tmp_path / "other.key"
        generate_key(signer)
    folder = make_pack(tmp_path, signer, base_dir, "pack")
    if spoil == "manifest edited":
        manifest = folder / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"Mum"', '"Dad"', 1))
    pack = tar_of(folder, tmp_path / "pack.tar", skip="manifest.sig" if spoil == "unsigned" else "")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(VoicePackError, match="unsigned|does not match any"):
        unpack(pack, dest, trusted)
    assert list(dest.iterdir()) == []
    assert unpack(tar_of(make_pack(tmp_path, key, base_dir, "good"), tmp_path / "good.tar"), dest, trusted)
    assert sorted(p.name for p in dest.iterdir()) == sorted(PACK_FILES)


def test_a_pack_of_100000_members_is_refused_after_a_few_headers(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path
) -> None:
    # The manifest comes last: finding it would mean reading every header.
    pack = tar_of(make_pack(tmp_path, key, base_dir, "pack"), tmp_path / "huge.tar", before=files(100_000))
    with pytest.raises(VoicePackError, match=f"more than {MAX_MEMBERS} members"):
        install_pack(pack, voices, trusted, BASE_SHA)
    assert snapshot(voices) == {}
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(VoicePackError, match=f"more than {MAX_MEMBERS} members"):
        unpack(pack, dest, trusted)
    assert list(dest.iterdir()) == [], "refused before a single file was written"


def nested_folders(depth: int) -> Iterator[tarfile.TarInfo]:
    for level in range(1, depth + 1):
        info = tarfile.TarInfo("/".join(["d"] * level))
        info.type = tarfile.DIRTYPE
        yield info


def deep_file(depth: int) -> Iterator[tarfile.TarInfo]:
    info = tarfile.TarInfo("d/" * depth + "x")
    info.size = 1
    yield info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (lambda: deep_file(2_000), r"is inside 2000 folder\(s\)"),
        (lambda: nested_folders(40), "is a folder"),
    ],
    ids=["file-2000-folders-deep", "40-nested-folders"],
)
def test_deep_folders_are_refused_with_a_clear_error(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path, members: Any, message: str
) -> None:
    pack = tar_of(make_pack(tmp_path, key, base_dir, "pack"), tmp_path / "deep.tar", before=members())
    with pytest.raises(VoicePackError, match=message):
        install_pack(pack, voices, trusted, BASE_SHA)
    assert snapshot(voices) == {}


@pytest.mark.parametrize("python", ["3.11.4+", "3.11.2 (Debian bookworm: no tar filters)"])
def test_tar_file_modes_never_reach_the_disk(
    tmp_path: Path,
    key: Path,
    base_dir: Path,
    trusted: list[Ed25519PublicKey],
    voices: Path,
    python: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "bookworm" in python:
        as_python_3_11_2(monkeypatch)
    pack = tar_of(make_pack(tmp_path, key, base_dir, "pack"), tmp_path / "setuid.tar", mode=0o4777)
    target = install_pack(pack, voices, trusted, BASE_SHA)
    assert {p.name: p.stat().st_mode & 0o7777 for p in target.iterdir()} == dict.fromkeys(PACK_FILES, 0o644)
    assert load_voice(voices, "mum").id == "mum"


def store(voices: Path, key: Path) -> VoiceStore:
    def no_stock(voice: str | None, lang: str) -> Any:
        raise AssertionError("the stock voices are not asked for here")

    trusted = [key.with_suffix(".pub").read_text()]
    return VoiceStore(voices, trusted, BASE_SHA, stock=no_stock, device_id=packs.CONSENT.device_id)


def test_leftovers_are_swept_at_start_and_after_a_failed_install(
    tmp_path: Path, key: Path, base_dir: Path, voices: Path
) -> None:
    voices.mkdir()
    (voices / ".upload-kill9.tar").write_bytes(b"\0" * 4096)  # an install killed before these versions
    (voices / ".incoming-kill9").mkdir()
    (voices / ".incoming-kill9" / "style.npy").write_bytes(b"half")
    speaker = store(voices, key)
    assert snapshot(voices) == {}
    (voices / ".upload-later.tar").write_bytes(b"\0" * 4096)
    other = tmp_path / "other.key"
    generate_key(other)
    foreign = tar_of(make_pack(tmp_path, other, base_dir, "foreign"), tmp_path / "foreign.tar")
    with pytest.raises(VoicePackError, match="does not match any"):
        speaker.install(base64.b64encode(foreign.read_bytes()).decode())
    assert snapshot(voices) == {}
    good = tar_of(make_pack(tmp_path, key, base_dir, "good"), tmp_path / "good.tar")
    assert speaker.install(base64.b64encode(good.read_bytes()).decode()).voice_id == "mum"
    assert sorted(p.name for p in voices.iterdir()) == ["mum"], "no upload file is left beside the voices"


SPEAKER = packs.CONSENT.device_id
"""The speaker the test packs' consent names: a pack for another speaker is refused."""


class HeldInstall:
    """The daemon's voice store, except that `install` waits until the test lets it go."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()

    def install(self, encoded: str) -> Any:
        self.entered.set()
        assert self.release.wait(120), "the test never let the install go"
        return self.store.install(encoded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_pack_installing_does_not_hold_up_other_commands(
    tmp_path: Path, engine: Engine, model_dir: Path, key: Path
) -> None:
    trusted_keys = [public_key_base64(load_signing_key(key))]
    style = np.asarray(engine.voices.get("jf_alpha").styles[60], np.float32)
    with running_daemon(tmp_path, engine, SPEAKER, "ma", trusted_keys=trusted_keys) as rig:
        held = HeldInstall(rig.daemon.controller.voices)
        rig.daemon.controller.voices = held
        pack = make_pack(tmp_path, key, model_dir, "pack", style=style)
        data = tar_of(pack, tmp_path / "pack.tar").read_bytes()
        ma: Remote = rig.parent
        try:
            ma.publish(SPEAKER, "voice.install", f'{{"id": "pack-1", "pack": "{base64.b64encode(data).decode()}"}}')
            assert held.entered.wait(60), "the install never started"
            assert ma.send(SPEAKER, "ping", timeout=20).result["pong"] is True  # answered mid-install
        finally:
            held.release.set()
        reply = ma.wait_for("reply", "pack-1", timeout=60)
        assert reply.payload["ok"] and reply.payload["result"]["voice_id"] == "mum", reply.payload
        assert ma.send(SPEAKER, "ping").result["voices"] == ["mum"]
