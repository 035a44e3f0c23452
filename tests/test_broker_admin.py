"""The installer's broker administration reaches its own broker and nothing else: a reload
signals only the Mosquitto started from this folder, `--bind` binds every listener, and the
database lives in the folder."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hearmylove.broker import Account, LocalBroker, free_port
from hearmylove_remote.families import Broker

from .rigs import listening

TIMEOUT = 30


@dataclass
class Family:
    folder: Path
    mqtt_port: int
    wss_port: int
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.folder / "mosquitto.log").read_text(errors="replace")


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.fixture
def family(tmp_path: Path) -> Iterator[Family]:
    folder = tmp_path / "family"
    admin = Broker(folder)
    mqtt_port, wss_port = free_port(), free_port()
    admin.init("127.0.0.1", mqtt_port, wss_port, bind="127.0.0.1")
    admin.add_family("wang", parents=["mum"], devices=["kid-a"])
    conf = folder / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\n" + conf.read_text())  # the test runs as root
    with open(folder / "mosquitto.log", "wb") as log:
        process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    running = Family(folder, mqtt_port, wss_port, process)
    wait_for(lambda: listening(mqtt_port) and listening(wss_port), "the family broker did not listen")
    yield running
    process.terminate()
    process.wait(timeout=10)


def test_adding_an_account_reloads_only_this_folders_broker(tmp_path: Path, family: Family) -> None:
    with LocalBroker(tmp_path / "bystander", [Account("someone", "pw")]) as bystander:
        cli = [str(Path(sys.executable).parent / "hearmylove-remote"), "broker"]
        added = subprocess.run(
            [*cli, "add-parent", "wang", "grandma", "--dir", str(family.folder)], capture_output=True, text=True
        )
        assert added.returncode == 0 and "mosquitto reloaded" in added.stdout, added.stderr
        wait_for(lambda: "Reloading config" in family.log(), "the family broker was not reloaded")
        # A connection makes the bystander run its loop, where a pending SIGHUP would be handled first.
        socket.create_connection(("127.0.0.1", bystander.port), timeout=5).close()
        log = bystander.folder / "mosquitto.log"
        wait_for(lambda: "New connection" in log.read_text(), "the bystander did not see the connection")
        assert "Reloading config" not in log.read_text(), "another Mosquitto on this host was signalled"


def test_a_stale_pid_file_signals_nobody(family: Family) -> None:
    (family.folder / "mosquitto.pid").write_text(f"{os.getpid()}\n")  # a number that is not Mosquitto now
    assert Broker(family.folder).reload() is False


def test_bind_holds_for_both_listeners_and_the_database_stays_in_the_folder(family: Family) -> None:
    sockets = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.splitlines()
    for port in (family.mqtt_port, family.wss_port):
        local = [line.split()[3] for line in sockets if line.split()[3].endswith(f":{port}")]
        assert local == [f"127.0.0.1:{port}"], f"port {port} listens on {local}"
    family.process.terminate()
    family.process.wait(timeout=10)
    assert (family.folder / "data" / "mosquitto.db").exists()
    assert "/var/lib/mosquitto" not in (family.folder / "mosquitto.conf").read_text()
