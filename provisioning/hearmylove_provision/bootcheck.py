"""Boot the built image in qemu-system-aarch64 and wait for its daemon to say `online`.

The test works on a sparse copy of the image, so the image itself stays blank. It writes
a test identity (a fresh CA and a signed voice pack) onto the copy's FAT partition exactly
as the installer would, takes the kernel and initrd from the image's root with debugfs
(no mounts), and starts a real Mosquitto on loopback. qemu's user-mode network shows the
host to the guest as 10.0.2.2, so nothing listens beyond 127.0.0.1. Passing means: the
kernel booted, first boot applied the identity (Wi-Fi written, voice pack verified and
installed, no sound card, simulated pins), the daemon started under systemd and published
`availability: online` over TLS. After a clean power-off the identity is gone from the FAT
partition and the stamp is in the root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hearmylove.basemodel import BASE_MODEL_NAME
from hearmylove.broker import Account, LocalBroker, free_port
from hearmylove.protocol import TOPIC_ROOT
from hearmylove.tls import make_tls
from hearmylove.voicepack import Consent

from . import tomlout
from .errors import BootTestError, ToolError
from .fatfs import FOLDER, FatVolume, partitions, tool
from .identity import load, write_to

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]
DEVICE_ID = "qemu-speaker"
# Console lines that mark how far the boot got, with the share of a typical boot they stand for.
MILESTONES = [
    ("Booting Linux", "kernel", 0.02),
    ("Run /init", "kernel", 0.1),
    ("systemd[1]: Detected", "systemd", 0.2),
    ("Hear My Love first boot", "firstboot", 0.35),
    ("provisioned", "firstboot", 0.5),
    ("Hear My Love speaker", "daemon", 0.6),
]


def _debugfs(image: Path, offset: int, command: str, writable: bool = False) -> bytes:
    args = [tool("debugfs", "e2fsprogs"), *(["-w"] if writable else []), "-R", command, f"{image}?offset={offset}"]
    result = subprocess.run(args, capture_output=True)
    if result.returncode != 0 or b"File not found" in result.stderr:
        raise ToolError(f"debugfs {command!r} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def root_offset(image: Path) -> int:
    linux = [p for p in partitions(image) if p.type in ("83", "0fc63daf-8483-4772-8e79-3d69d8477de4")]
    if not linux:
        raise BootTestError(f"{image} has no Linux root partition")
    return linux[0].start


def extract_boot_files(image: Path, work: Path) -> tuple[Path, Path]:
    """The newest vmlinuz and its initrd from the image's /boot, read with debugfs."""
    offset = root_offset(image)
    listing = _debugfs(image, offset, "ls -p /boot").decode(errors="replace")
    names = re.findall(r"/(vmlinuz-[^/]+)/", listing)
    if not names:
        raise BootTestError(f"no /boot/vmlinuz-* in the root of {image}")
    version = sorted(names)[-1].removeprefix("vmlinuz-")
    kernel, initrd = work / "vmlinuz", work / "initrd.img"
    for name, dest in ((f"vmlinuz-{version}", kernel), (f"initrd.img-{version}", initrd)):
        _debugfs(image, offset, f"dump /boot/{name} {dest}")
        if not dest.exists() or dest.stat().st_size == 0:
            raise BootTestError(f"could not read /boot/{name} from {image}")
    return kernel, initrd


def _test_identity(image: Path, work: Path, port: int, password: str, ca: Path, pack: bool = True) -> Path:
    """A test identity with (by default) a signed voice pack made for the base model inside the image."""
    from voicelab.pack import build_pack, generate_key, load_signing_key, public_key_base64

    manifest = _debugfs(image, root_offset(image), f"cat /var/lib/hearmylove/models/{BASE_MODEL_NAME}/manifest.json")
    base = work / "base"
    base.mkdir()
    (base / "manifest.json").write_bytes(manifest)
    key = work / "studio.key"
    generate_key(key)
    consent = Consent(
        recorded_by="boot test",
        recorded_at=datetime.now(UTC),
        device_id=DEVICE_ID,
        statement="Test voice for the qemu boot test; no one's real voice.",
    )
    style = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    build_pack(style, "testvoice", "Test", ["en"], consent, {}, base, key, work / "voice.tar")
    data = {
        "device_id": DEVICE_ID,
        "timezone": "Europe/London",
        "trusted_keys": [public_key_base64(load_signing_key(key))],
        "voice_pack": "voice.tar" if pack else None,
        "sound": "none",
        "wifi": {"ssid": "no-wifi-in-qemu", "passphrase": "only-written-not-used", "country": "GB"},
        "broker": {"url": f"mqtts://10.0.2.2:{port}", "ca": str(ca), "username": DEVICE_ID, "password": password},
        "daemon": {"simulate_pins": True, "engine": {"threads": 2}},
    }
    path = work / "identity.toml"
    path.write_text(tomlout.dumps(data))
    return path


SLOW_CPU_DROPIN = """\
# Boot test only (written onto the test's copy of the image): qemu's software emulation runs
# several times slower than a Pi 4, so loading the models may outlast the real start timeout.
[Service]
TimeoutStartSec=30min
"""


def _relax_start_timeout(image: Path, work: Path) -> None:
    """Add a drop-in to the copy's root with debugfs -w (no mount)."""
    local = work / "slow-cpu.conf"
    local.write_text(SLOW_CPU_DROPIN)
    os.chmod(local, 0o644)
    folder = "/etc/systemd/system/hearmylove.service.d"
    _debugfs(image, root_offset(image), f"write {local} {folder}/slow-cpu.conf", writable=True)


def _wait_online(port: int, password: str, online: threading.Event) -> object:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="boot-test", protocol=mqtt.MQTTv5)
    client.username_pw_set("boot-test-parent", password)
    topic = f"{TOPIC_ROOT}/{DEVICE_ID}/availability"
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, msg: online.set() if msg.payload == b"online" else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _qemu_args(image: Path, kernel: Path, initrd: Path, console: Path, monitor: Path) -> list[str]:
    cmdline = "root=LABEL=HMLROOT rw rootwait console=ttyAMA0 net.ifnames=0 systemd.journald.forward_to_console=1"
    return [
        tool("qemu-system-aarch64", "qemu-system-arm"),
        *("-M", "virt", "-cpu", "cortex-a72", "-smp", str(min(4, os.cpu_count() or 2)), "-m", "2048"),
        *("-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline),
        *("-drive", f"file={image},format=raw,if=virtio,cache=unsafe"),
        *("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"),
        *("-display", "none", "-serial", f"file:{console}", "-monitor", f"unix:{monitor},server,nowait"),
        "-no-reboot",
    ]


def _power_off(process: subprocess.Popen[bytes], monitor: Path, wait: float) -> None:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(monitor))
            s.sendall(b"system_powerdown\n")
        process.wait(timeout=wait)
    except (OSError, subprocess.TimeoutExpired):
        log.warning("the guest did not power off within %.0f s; stopping qemu", wait)
        process.kill()
        process.wait(timeout=30)


def _milestones(console: Path, progress: Progress, seen: set[str]) -> None:
    text = console.read_text(errors="replace") if console.exists() else ""
    for marker, stage, fraction in MILESTONES:
        if marker not in seen and marker in text:
            seen.add(marker)
            progress(stage, fraction)


def _check_after(image: Path) -> None:
    """First boot removed the identity (secrets) from the FAT partition and left its stamp."""
    if FatVolume(image).listdir(FOLDER):
        raise BootTestError("the identity is still on the FAT partition after first boot")
    stamp = _debugfs(image, root_offset(image), "cat /etc/hearmylove/provisioned").decode(errors="replace")
    if DEVICE_ID not in stamp:
        raise BootTestError(f"no first-boot stamp for {DEVICE_ID} in /etc/hearmylove/provisioned: {stamp!r}")


def boot_test(
    image: Path,
    work: Path | None = None,
    timeout: float = 3600.0,
    progress: Progress | None = None,
    voice_pack: bool = True,
) -> float:
    """Boot, provision and wait for `online`; the seconds from power-on to online."""
    progress = progress or (lambda stage, fraction: None)
    image = Path(image)
    if not image.is_file():
        raise BootTestError(f"no image at {image}; build one with: provision build")
    folder = Path(work) if work else Path(tempfile.mkdtemp(prefix="hml-boot-"))
    folder.mkdir(parents=True, exist_ok=True)
    progress("prepare", 0.0)
    disk = folder / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    kernel, initrd = extract_boot_files(disk, folder)
    tls = make_tls(folder / "tls", ["10.0.2.2", "127.0.0.1"])
    device_password, parent_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    accounts = [Account(DEVICE_ID, device_password), Account("boot-test-parent", parent_password, (DEVICE_ID,))]
    broker = LocalBroker(folder / "broker", accounts, tls=tls, tls_port=free_port())
    identity = load(_test_identity(disk, folder, broker.tls_port or 0, device_password, tls.ca_cert, voice_pack))
    write_to(disk, identity)
    _relax_start_timeout(disk, folder)
    console, monitor = folder / "console.log", folder / "monitor.sock"
    online = threading.Event()
    with broker:
        client = _wait_online(broker.port, parent_password, online)
        progress("boot", 0.0)
        began = time.monotonic()
        qemu = subprocess.Popen(_qemu_args(disk, kernel, initrd, console, monitor), stdout=subprocess.DEVNULL)
        seen: set[str] = set()
        try:
            while not online.wait(2.0):
                _milestones(console, lambda s, f: progress(s, f), seen)
                if qemu.poll() is not None:
                    raise BootTestError(f"qemu exited ({qemu.returncode}) before online:\n{_tail(console)}")
                if time.monotonic() - began > timeout:
                    raise BootTestError(f"not online after {timeout:.0f} s:\n{_tail(console)}")
            seconds = time.monotonic() - began
            progress("online", 1.0)
            log.info("online after %.0f s; powering off", seconds)
        finally:
            client.loop_stop()  # type: ignore[attr-defined]
            _power_off(qemu, monitor, wait=60)
    _check_after(disk)
    (folder / "result.json").write_text(json.dumps({"seconds_to_online": round(seconds, 1)}))
    if work is None:
        shutil.rmtree(folder, ignore_errors=True)
    return seconds


def _tail(console: Path, lines: int = 60) -> str:
    text = console.read_text(errors="replace") if console.exists() else "(no console output)"
    return "\n".join(text.splitlines()[-lines:])
