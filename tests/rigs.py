"""A real daemon in a thread against a real Mosquitto, with a parent logged in: the rig
for tests that drive the speaker from both sides (pins, MQTT) in one process; and the
daemon as its own process (`Speaker`), as systemd starts it."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from hearmylove.audio import WavFileOutput, alsa_file_config
from hearmylove.broker import Account, LocalBroker
from hearmylove.config import DaemonConfig
from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove.remote import Message, Remote


@dataclass
class Rig:
    daemon: Daemon
    parent: Remote
    pins: MockFactory
    broker: LocalBroker
    thread: threading.Thread
    """The daemon's loop: alive for as long as the daemon has not crashed."""


@contextmanager
def running_daemon(
    tmp_path: Path, engine: Engine, device: str, parent: str, others: tuple[Account, ...] = (), **config: Any
) -> Iterator[Rig]:
    """`others`: more accounts on the same broker (another family, a stranger)."""
    accounts = [Account(device, "device-pw"), Account(parent, "parent-pw", devices=(device,)), *others]
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        pins = MockFactory(pin_class=MockPWMPin)
        settings = DaemonConfig(
            device_id=device,
            state_dir=tmp_path / "state",
            mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "username": device, "password": "device-pw"},
            **config,
        )
        daemon = Daemon(settings, engine=engine, output=WavFileOutput(tmp_path / "out.wav"), pin_factory=pins)
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        try:
            with Remote("127.0.0.1", broker.port, parent, "parent-pw") as remote:
                while remote.wait_for("availability", timeout=30, device_id=device).payload != "online":
                    pass
                yield Rig(daemon, remote, pins, broker, thread)
        finally:
            stop.set()
            thread.join(timeout=30)
            pins.reset()


class Speaker:
    """`hearmylove run` in its own process, as systemd would start it."""

    def __init__(
        self, folder: Path, broker: LocalBroker, device: str = "kid-001", password: str = "device-secret"
    ) -> None:
        self.folder = folder
        self.raw = folder / "played.raw"
        self.config = folder / "config.toml"
        self.config.write_text(
            f'device_id = "{device}"\nstate_dir = "{folder / "state"}"\nsimulate_pins = true\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\n'
            f'username = "{device}"\npassword = "{password}"\nreconnect_max_seconds = 2\n'
            "[story]\nprogress_interval = 2\n"
        )
        self.env = {**os.environ, **alsa_file_config(self.raw, folder / "asound.conf")}
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.folder / f"daemon-{self.runs}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "hearmylove"), "run", "--config", str(self.config)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("daemon-*.log")))


def drained(remote: Remote) -> list[Message]:
    """What the remote received and no wait_for took yet: once a reply is in, everything the
    speaker published before it (it answers in order)."""
    received = []
    while True:
        try:
            received.append(remote.messages.get_nowait())
        except queue.Empty:
            return received


def listening(port: int) -> bool:
    """Whether something accepts connections on this loopback port now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
