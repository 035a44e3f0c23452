"""A Mosquitto child process for the demo and the tests, configured like the real one:
no anonymous clients, a password per device and per parent, ACLs that keep a device in
its own subtree and a parent in their family's devices, sessions persisted on disk.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BrokerError
from .protocol import TOPIC_ROOT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    devices: tuple[str, ...] = ()
    """For a parent: the device ids of their family. Empty for a device account."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def acl_text(accounts: list[Account]) -> str:
    """Devices by pattern (their username is their device id); parents by explicit topics."""
    lines = [
        "# devices: only their own subtree",
        f"pattern read {TOPIC_ROOT}/%u/cmd/#",
        f"pattern write {TOPIC_ROOT}/%u/reply/#",
        f"pattern write {TOPIC_ROOT}/%u/event/#",
        f"pattern write {TOPIC_ROOT}/%u/state",
        f"pattern write {TOPIC_ROOT}/%u/availability",
        "",
    ]
    for account in accounts:
        if not account.devices:
            continue
        lines.append(f"user {account.username}")
        for device in account.devices:
            lines.append(f"topic write {TOPIC_ROOT}/{device}/cmd/#")
            lines.append(f"topic read {TOPIC_ROOT}/{device}/#")
        lines.append("")
    return "\n".join(lines)


@dataclass
class LocalBroker:
    folder: Path
    accounts: list[Account]
    port: int = field(default_factory=free_port)
    websocket_port: int | None = None
    _process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        passwords = self.folder / "passwords"
        passwords.write_text("")
        tool = shutil.which("mosquitto_passwd")
        if tool is None:
            raise BrokerError("mosquitto_passwd not found; install it with: apt-get install mosquitto")
        for account in self.accounts:
            subprocess.run([tool, "-b", str(passwords), account.username, account.password], check=True)
        (self.folder / "acl").write_text(acl_text(self.accounts))
        lines = [
            # Started as root, mosquitto would switch to its own user and lose our private files.
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            f"acl_file {self.folder / 'acl'}",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.websocket_port:
            lines += [f"listener {self.websocket_port} 127.0.0.1", "protocol websockets"]
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> LocalBroker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerError("mosquitto not found; install it with: apt-get install mosquitto")
        conf = self._write_config() if self._process is None else self.folder / "mosquitto.conf"
        log_file = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - lives as long as the broker
        self._process = subprocess.Popen([binary, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"mosquitto exited at start; see {self.folder / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start on the same port with the same persisted sessions."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
