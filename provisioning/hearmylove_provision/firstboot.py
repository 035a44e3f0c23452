"""First boot on the speaker: move the identity from the FAT partition into the system, once.

Run by hearmylove-firstboot.service (as root, before the daemon and the network) from the
daemon's venv. Everything is checked before anything is written: the identity again (the
card may have been edited by hand), and the voice pack's signature and base model with
the daemon's own `hearmylove.voicepack`. Then config.toml, the CA and credentials go to
/etc/hearmylove (0640 root:hearmylove), Wi-Fi to wpa_supplicant and systemd-networkd
(the passphrase only as its derived PSK), the timezone to /etc/localtime, the voice pack
into the daemon's voices folder; the copy on the FAT partition (it holds secrets) is
deleted and a stamp makes sure this never runs again. `root` lets tests apply it to a tree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hearmylove.basemodel import BASE_MODEL_NAME, read_manifest
from hearmylove.durable import fsync
from hearmylove.voicepack import install_pack, load_public_key, verify_pack

from . import tomlout
from .errors import ProvisionError
from .identity import BUNDLE_NAMES, ETC, STATE, Identity, daemon_config, load

log = logging.getLogger(__name__)

BUNDLE = Path("boot/firmware/hearmylove")
STAMP = Path("etc/hearmylove/provisioned")
WPA_CONF = Path("etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
WLAN_NETWORK = Path("etc/systemd/network/25-wlan0.network")
USER = "hearmylove"


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int

    @classmethod
    def of(cls, root: Path, user: str = USER) -> Owner:
        """The daemon's uid/gid as the image's own passwd and group files say (not this machine's)."""
        uid = gid = None
        for line in (root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user and len(fields) > 3:
                uid = int(fields[2])
        for line in (root / "etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user and len(fields) > 2:
                gid = int(fields[2])
        if uid is None or gid is None:
            raise ProvisionError(f"no {user!r} user or group in {root / 'etc'}; the image was not built by provision")
        return cls(uid, gid)


def _chown(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid, follow_symlinks=False)


def _install(path: Path, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write atomically with its final mode and owner from the first byte (secrets never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync(path.parent)


def wpa_supplicant_conf(identity: Identity) -> str:
    """wpa_supplicant's file for wlan0: the SSID in hex (no quoting pitfalls) and the PSK, not the passphrase."""
    wifi = identity.wifi
    psk = hashlib.pbkdf2_hmac("sha1", wifi.passphrase.encode(), wifi.ssid.encode(), 4096, 32).hex()
    lines = ["# Written once by hearmylove-firstboot", "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev"]
    lines += [f"country={wifi.country}"] if wifi.country else []
    lines += ["update_config=0", "", "network={", f"    ssid={wifi.ssid.encode().hex()}", f"    psk={psk}"]
    lines += ["    key_mgmt=WPA-PSK", "    scan_ssid=1", "}", ""]
    return "\n".join(lines)


NO_SOUND_CARD_ASOUND = (
    '# No sound card (written by hearmylove-firstboot for sound = "none"): play into ALSA\'s null device.\n'
    'pcm.!default {\n    type plug\n    slave.pcm "null"\n}\n'
)


def _model_dir(identity: Identity, root: Path) -> Path:
    configured = identity.daemon.get("engine", {}).get("model_dir")
    inside = Path(configured) if configured else STATE / "models" / BASE_MODEL_NAME
    return root / inside.relative_to("/")


def _check_pack(identity: Identity, root: Path) -> str | None:
    """Verify the pack (for this speaker: its consent must name the identity's device id) before
    anything is written; the base model's sha256 it must match."""
    if identity.voice_pack is None:
        return None
    base_sha = str(read_manifest(_model_dir(identity, root))["base_model_sha256"])
    keys = [load_public_key(k) for k in identity.trusted_keys]
    manifest = verify_pack(identity.voice_pack, keys, base_sha, identity.device_id)
    log.info("voice pack %s (%s) verified", manifest.voice_id, manifest.display_name)
    return base_sha


def _write_etc(identity: Identity, root: Path, owner: Owner) -> None:
    etc = root / ETC.relative_to("/")
    etc.mkdir(parents=True, exist_ok=True)
    os.chmod(etc, 0o750)
    _chown(etc, 0, owner.gid)
    broker = identity.broker
    for field, source in (("ca", broker.ca), ("client_cert", broker.client_cert), ("client_key", broker.client_key)):
        if source is not None:
            _install(etc / BUNDLE_NAMES[field], Path(source).read_bytes(), 0o640, 0, owner.gid)
    text = tomlout.dumps(daemon_config(identity), header="Written once by hearmylove-firstboot from the identity")
    _install(etc / "config.toml", text.encode(), 0o640, 0, owner.gid)
    env = "HEARMYLOVE_AUDIO_PACE=1\n" if identity.sound == "none" else ""
    _install(etc / "environment", env.encode(), 0o644)
    log.info("wrote %s (config.toml, CA%s)", ETC, ", client certificate" if broker.client_cert else "")


def _write_network(identity: Identity, root: Path) -> None:
    _install(root / WPA_CONF, wpa_supplicant_conf(identity).encode(), 0o600)
    network = "[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n"
    _install(root / WLAN_NETWORK, network.encode(), 0o644)
    log.info("Wi-Fi %r configured for wlan0", identity.wifi.ssid)


def _set_timezone(identity: Identity, root: Path) -> None:
    zone = identity.timezone
    if not (root / "usr/share/zoneinfo" / zone).exists():
        log.warning("timezone %s has no file under %s/usr/share/zoneinfo (tzdata missing?)", zone, root)
    localtime = root / "etc/localtime"
    tmp = localtime.with_name(".localtime.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"/usr/share/zoneinfo/{zone}")
    os.replace(tmp, localtime)
    _install(root / "etc/timezone", f"{zone}\n".encode(), 0o644)
    log.info("timezone set to %s", zone)


def _set_sound(identity: Identity, root: Path) -> None:
    if identity.sound == "none":
        _install(root / "etc/asound.conf", NO_SOUND_CARD_ASOUND.encode(), 0o644)
        log.info("no sound card: ALSA's default device is the null device")


def _install_pack(identity: Identity, root: Path, owner: Owner, base_sha: str) -> None:
    assert identity.voice_pack is not None
    voices = root / STATE.relative_to("/") / "voices"
    keys = [load_public_key(k) for k in identity.trusted_keys]
    target = install_pack(identity.voice_pack, voices, keys, base_sha, identity.device_id)
    for path in (voices, target, *target.rglob("*")):
        _chown(path, owner.uid, owner.gid)
    log.info("voice pack installed in %s", target.relative_to(root))


def apply(root: Path = Path("/")) -> bool:
    """Apply the identity on the FAT partition once; False when already applied (nothing done)."""
    root = Path(root)
    if (root / STAMP).exists():
        log.info("already provisioned (%s exists); nothing to do", STAMP)
        return False
    bundle = root / BUNDLE
    identity = load(bundle / "identity.toml")
    owner = Owner.of(root)
    base_sha = _check_pack(identity, root)
    _write_etc(identity, root, owner)
    _write_network(identity, root)
    _set_timezone(identity, root)
    _set_sound(identity, root)
    if base_sha is not None:
        _install_pack(identity, root, owner, base_sha)
    shutil.rmtree(bundle)
    fsync(bundle.parent)
    log.info("removed the identity bundle from the FAT partition")
    stamp = f"device_id = {identity.device_id}\napplied_at = {datetime.now(UTC).isoformat()}\n"
    _install(root / STAMP, stamp.encode(), 0o644)
    log.info("speaker %s provisioned", identity.device_id)
    return True
