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
from .protocol import MAX_MESSAGE_BYTES, TOPIC_ROOT
from .tls import TlsFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    """One login on the broker: a speaker (named by its device id) or a parent."""

    username: str
    password: str
    devices: tuple[str, ...] = ()
    """For a parent: the device ids of their family. Empty for a device account."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it)."""
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


@dataclass(frozen=True)
class Listener:
    """One port Mosquitto listens on: plain MQTT, MQTT over WebSockets, either with TLS."""

    port: int
    websockets: bool = False
    tls: bool = False
    bind: str = "127.0.0.1"


def _listener_lines(listener: Listener) -> list[str]:
    lines = ["", f"listener {listener.port} {listener.bind}".rstrip()]
    if listener.bind and listener.websockets:
        # Mosquitto 2.0.11's WebSockets listener ignores the address unless the IP family is named.
        lines.append(f"socket_domain {'ipv6' if ':' in listener.bind else 'ipv4'}")
    if listener.websockets:
        lines.append("protocol websockets")
    # A listener's own setting in Mosquitto 2.0.11, whatever per_listener_settings says.
    lines.append("use_username_as_clientid true")
    return lines


def mosquitto_conf(folder: Path, listeners: list[Listener], tls: TlsFiles | None, persistence: Path) -> str:
    """The broker's configuration: the same shape for the family broker and the tests.

    - `use_username_as_clientid`: a client's id is its account name, so no account can
      connect under a speaker's id and take its session (and the commands queued in it).
    - `max_packet_size` / `message_size_limit`: nothing bigger than the largest legitimate
      command (a voice pack) is read into memory or passed on.
    - `autosave_on_changes` with `autosave_interval 1`: the database is written after every
      loop that queued or changed something, so a broker killed after acknowledging a
      command still has it (docs/security.md has the cost).
    """
    lines = [
        "# Hear My Love family broker (written by hearmylove; edit the family registry, not this file)",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / 'passwords'}",
        f"acl_file {folder / 'acl'}",
        f"max_packet_size {MAX_MESSAGE_BYTES + 64 * 1024}",
        f"message_size_limit {MAX_MESSAGE_BYTES}",
        "persistence true",
        f"persistence_location {persistence}/",
        "autosave_on_changes true",
        "autosave_interval 1",
        f"pid_file {folder / 'mosquitto.pid'}",
        "max_inflight_messages 20",
        "max_queued_messages 1000",
    ]
    for listener in listeners:
        lines += _listener_lines(listener)
        if listener.tls:
            if tls is None:
                raise BrokerError(f"listener {listener.port} wants TLS but no certificate was made")
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                "tls_version tlsv1.2",
            ]
    return "\n".join(lines) + "\n"


def set_password(passwords: Path, username: str, password: str) -> None:
    """Add or change one account in Mosquitto's password file (stored hashed)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise BrokerError("mosquitto_passwd not found; install it with: apt-get install mosquitto")
    if not passwords.exists():
        passwords.touch(mode=0o600)
    subprocess.run([tool, "-b", str(passwords), username, password], check=True, capture_output=True)


@dataclass
class LocalBroker:
    """A real Mosquitto child process on loopback, configured by `mosquitto_conf`."""

    folder: Path
    accounts: list[Account]
    port: int = field(default_factory=free_port)
    """Plain MQTT on 127.0.0.1 (the demo and most tests)."""
    websocket_port: int | None = None
    tls: TlsFiles | None = None
    tls_port: int | None = None
    wss_port: int | None = None
    _process: subprocess.Popen[bytes] | None = None

    def listeners(self) -> list[Listener]:
        """The ports this broker listens on: always plain MQTT, and the optional ones set."""
        found = [Listener(self.port)]
        if self.websocket_port:
            found.append(Listener(self.websocket_port, websockets=True))
        if self.tls_port:
            found.append(Listener(self.tls_port, tls=True))
        if self.wss_port:
            found.append(Listener(self.wss_port, websockets=True, tls=True))
        return found

    def _write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        passwords = self.folder / "passwords"
        passwords.unlink(missing_ok=True)
        for account in self.accounts:
            set_password(passwords, account.username, account.password)
        (self.folder / "acl").write_text(acl_text(self.accounts))
        # Started as root, mosquitto would switch to its own user and lose our private files.
        text = f"user {getpass.getuser()}\n" + mosquitto_conf(self.folder, self.listeners(), self.tls, self.folder)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(text)
        return conf

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Write the config (first start only) and start Mosquitto; returns once it accepts
        connections. Raises BrokerError when Mosquitto is missing, exits, or is not listening
        within `timeout` seconds (its log is in `folder`)."""
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

    def kill(self) -> None:
        """As a power cut or the OOM killer would: no chance to save anything."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate Mosquitto (it saves the sessions), killing it after 10 s."""
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
