"""First boot, applied to a fake root: the identity moves into the system once, and only once."""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
from pathlib import Path

import pytest

from hearmylove import voicepack
from hearmylove.errors import VoicePackError
from hearmylove_provision.cli import main
from hearmylove_provision.firstboot import BUNDLE, STAMP, apply
from hearmylove_provision.identity import bundle, load

from .provision_helpers import base_model_dir, identity_data, studio_key, voice_pack, write_identity

pytestmark = pytest.mark.fast

UID = GID = 990


def make_root(root: Path) -> Path:
    """The parts of the image first boot touches: users, the base model, tzdata, the FAT mount point."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nhearmylove:x:{UID}:{GID}::/nonexistent:/usr/sbin/nologin\n"
    )
    (root / "etc/group").write_text(f"root:x:0:\naudio:x:29:hearmylove\nhearmylove:x:{GID}:\n")
    base_model_dir(root / "var/lib/hearmylove/models/kokoro-82m-v1.0-int8")
    (root / "usr/share/zoneinfo/Asia").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Asia/Shanghai").write_bytes(b"TZif")
    (root / "boot/firmware").mkdir(parents=True)
    return root


def put_bundle(root: Path, identity_file: Path) -> None:
    folder = root / BUNDLE
    folder.mkdir(parents=True)
    for name, data in bundle(load(identity_file)).items():
        (folder / name).write_bytes(data)


@pytest.fixture
def studio(tmp_path: Path) -> tuple[Path, str]:
    return studio_key(tmp_path / "studio")


@pytest.fixture
def root(tmp_path: Path, studio: tuple[Path, str]) -> Path:
    root = make_root(tmp_path / "root")
    desk = tmp_path / "desk"
    desk.mkdir()
    voice_pack(desk, studio[0], root / "var/lib/hearmylove/models/kokoro-82m-v1.0-int8")
    data = identity_data(desk, timezone="Asia/Shanghai", voice_pack="mama.tar", trusted_keys=[studio[1]])
    put_bundle(root, write_identity(desk, data))
    return root


def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_boot_applies_the_identity_once_and_only_once(root: Path) -> None:
    assert apply(root) is True
    etc = root / "etc/hearmylove"
    config = tomllib.loads((etc / "config.toml").read_text())
    assert config["device_id"] == "kid-001" and config["mqtt"]["ca_file"] == "/etc/hearmylove/ca.crt"
    assert config["mqtt"]["host"] == "broker.example.org" and config["mqtt"]["password"] == "s3cret-pass"
    assert len(config["trusted_keys"]) == 1
    for name in ("config.toml", "ca.crt"):
        assert mode(etc / name) & 0o037 == 0, name  # 0640 or tighter: no write for the group, nothing for others
        if os.geteuid() == 0:
            assert ((etc / name).stat().st_uid, (etc / name).stat().st_gid) == (0, GID)
    assert mode(etc) == 0o750
    wpa = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    psk = hashlib.pbkdf2_hmac("sha1", b"correct horse battery", b"Home Sweet Home", 4096, 32).hex()
    assert f"psk={psk}" in wpa.read_text() and "correct horse" not in wpa.read_text() and mode(wpa) == 0o600
    assert f"ssid={b'Home Sweet Home'.hex()}" in wpa.read_text() and "country=GB" in wpa.read_text()
    assert "Name=wlan0" in (root / "etc/systemd/network/25-wlan0.network").read_text()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Asia/Shanghai"
    assert (root / "etc/timezone").read_text() == "Asia/Shanghai\n"
    voices = root / "var/lib/hearmylove/voices"
    assert voicepack.installed(voices) == ["mama"]
    assert voicepack.load_voice(voices, "mama").id == "mama"
    if os.geteuid() == 0:
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [voices, *voices.rglob("*")]} == {(UID, GID)}
    assert not (root / BUNDLE).exists() and (root / "boot/firmware").is_dir()
    assert "device_id = kid-001" in (root / STAMP).read_text()

    before = tree(root)
    assert apply(root) is False
    assert tree(root) == before


def test_a_pack_that_does_not_verify_stops_first_boot_before_anything_is_written(
    tmp_path: Path, studio: tuple[Path, str]
) -> None:
    root = make_root(tmp_path / "root")
    desk = tmp_path / "desk"
    desk.mkdir()
    other, _ = studio_key(tmp_path / "other-studio")
    voice_pack(desk, other, root / "var/lib/hearmylove/models/kokoro-82m-v1.0-int8")  # signed by someone else
    data = identity_data(desk, voice_pack="mama.tar", trusted_keys=[studio[1]])
    put_bundle(root, write_identity(desk, data))
    with pytest.raises(VoicePackError, match="does not match any"):
        apply(root)
    assert not (root / "etc/hearmylove").exists() and not (root / "etc/wpa_supplicant").exists()
    assert (root / BUNDLE / "identity.toml").exists() and not (root / STAMP).exists()


def test_a_pack_made_for_another_speaker_stops_first_boot_naming_both_speakers(
    tmp_path: Path, studio: tuple[Path, str]
) -> None:
    root = make_root(tmp_path / "root")
    desk = tmp_path / "desk"
    desk.mkdir()
    voice_pack(desk, studio[0], root / "var/lib/hearmylove/models/kokoro-82m-v1.0-int8")  # consent: kid-001
    broker = {"url": "mqtts://broker.example.org:8883", "ca": "family-ca.crt", "username": "kid-002", "password": "pw"}
    data = identity_data(desk, device_id="kid-002", broker=broker, voice_pack="mama.tar", trusted_keys=[studio[1]])
    put_bundle(root, write_identity(desk, data))
    with pytest.raises(VoicePackError, match="made for speaker 'kid-001'.*not for this speaker 'kid-002'"):
        apply(root)
    assert not (root / "etc/hearmylove").exists() and not (root / "var/lib/hearmylove/voices").exists()
    assert (root / BUNDLE / "identity.toml").exists() and not (root / STAMP).exists()


def test_a_speaker_without_a_sound_card_plays_into_the_null_device(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    desk = tmp_path / "desk"
    desk.mkdir()
    put_bundle(root, write_identity(desk, identity_data(desk, sound="none", daemon={"simulate_pins": True})))
    assert main(["firstboot", "--root", str(root)]) == 0
    assert 'slave.pcm "null"' in (root / "etc/asound.conf").read_text()
    assert (root / "etc/hearmylove/environment").read_text() == "HEARMYLOVE_AUDIO_PACE=1\n"
    assert tomllib.loads((root / "etc/hearmylove/config.toml").read_text())["simulate_pins"] is True
    assert not (root / "var/lib/hearmylove/voices").exists()


def test_first_boot_without_an_identity_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path / "root")
    assert main(["firstboot", "--root", str(root)]) == 1
    assert "identity.toml' does not exist" in capsys.readouterr().err
