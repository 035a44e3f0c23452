"""A real daemon in a thread against a real Mosquitto, with a parent logged in: the rig
for tests that drive the speaker from both sides (pins, MQTT) in one process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from hearmylove.audio import WavFileOutput
from hearmylove.broker import Account, LocalBroker
from hearmylove.config import DaemonConfig
from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove.remote import Remote


@dataclass
class Rig:
    daemon: Daemon
    parent: Remote
    pins: MockFactory
    broker: LocalBroker


@contextmanager
def running_daemon(tmp_path: Path, engine: Engine, device: str, parent: str, **config: Any) -> Iterator[Rig]:
    accounts = [Account(device, "device-pw"), Account(parent, "parent-pw", devices=(device,))]
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
                yield Rig(daemon, remote, pins, broker)
        finally:
            stop.set()
            thread.join(timeout=30)
            pins.reset()
