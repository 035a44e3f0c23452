"""A family broker as a region of a fleet: `broker bridge` writes the Mosquitto bridge, and a
command sent on the fleet broker reaches a speaker on the regional broker and is answered."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hearmylove.broker import Account, LocalBroker, free_port
from hearmylove.config import MqttConfig
from hearmylove.mqtt import Incoming, MqttLink
from hearmylove.protocol import Reply
from hearmylove.remote import Remote
from hearmylove_remote.cli import main as remote_cli
from hearmylove_remote.families import Broker

from .rigs import listening


def test_bridge_needs_speakers_and_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Broker(tmp_path).init("127.0.0.1")
    args = ["broker", "bridge", "eu-1", "--dir", str(tmp_path), "--to", "fleet.example.org:8883", "--user", "b"]
    assert remote_cli([*args, "--password", "x", "--ca", "ca.crt"]) == 2
    assert "no speakers yet" in capsys.readouterr().err
    Broker(tmp_path).add_family("fam", ["ma"], ["kid-1"])
    assert remote_cli([*args, "--password", "x"]) == 2
    assert "CA certificate" in capsys.readouterr().err
    assert remote_cli([*args[:6], "fleet.example.org", *args[7:], "--password", "x", "--ca", "c"]) == 2
    assert "must be host:port" in capsys.readouterr().err


def test_a_command_crosses_the_bridge_and_is_answered(tmp_path: Path) -> None:
    region = Broker(tmp_path / "region")
    registry = region.init("127.0.0.1", bind="127.0.0.1")
    registry = registry.model_copy(update={"mqtt_port": free_port(), "wss_port": free_port()})
    region.save(registry)
    passwords = region.add_family("lin", ["ma"], ["kid-bridge"]) | region.add_family("wu", ["ba"], ["kid-other"])

    fleet_accounts = [Account("bridge-eu", "bridge-pw"), Account("studio", "studio-pw", devices=("kid-bridge",))]
    with LocalBroker(tmp_path / "fleet", fleet_accounts) as fleet:
        args = ["broker", "bridge", "eu-1", "--dir", str(region.folder), "--to", f"127.0.0.1:{fleet.port}"]
        assert remote_cli([*args, "--user", "bridge-eu", "--password", "bridge-pw", "--no-tls"]) == 0
        conf = (region.folder / "bridge-eu-1.conf").read_text()
        assert "topic hml/v1/kid-bridge/cmd/# in 1" in conf and "topic hml/v1/kid-other/state out 1" in conf
        # The fleet broker learns the bridge's rights (read again when it restarts).
        with open(fleet.folder / "acl", "a") as acl:
            acl.write("\n" + (region.folder / "bridge-eu-1.fleet-acl").read_text())
        fleet.restart()

        run_conf = region.folder / "run.conf"
        run_conf.write_text(f"user {getpass.getuser()}\n" + (region.folder / "mosquitto.conf").read_text() + conf)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(region.folder / "mosquitto.log", "wb") as log:
            regional = subprocess.Popen([binary, "-c", str(run_conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not listening(registry.mqtt_port):
                assert regional.poll() is None and time.monotonic() < deadline, region.folder / "mosquitto.log"
                time.sleep(0.1)
            _speaker_answers_through_the_bridge(registry.mqtt_port, region.folder, passwords, fleet.port)
        finally:
            regional.terminate()
            regional.wait(timeout=30)


def _speaker_answers_through_the_bridge(port: int, folder: Path, passwords: dict[str, str], fleet_port: int) -> None:
    answered = threading.Event()
    config = MqttConfig(
        host="127.0.0.1",
        port=port,
        ca_file=folder / "tls" / "ca.crt",
        username="kid-bridge",
        password=passwords["kid-bridge"],
    )
    holder: list[MqttLink] = []

    def on_command(incoming: Incoming) -> None:
        holder[0].reply(Reply(id=json.loads(incoming.payload)["id"], ok=True, result={"via": "bridge"}), incoming)
        holder[0].ack(incoming)
        answered.set()

    link = MqttLink(config, "kid-bridge", on_command)
    holder.append(link)
    link.start()
    try:
        assert link.connected.wait(30)
        with Remote("127.0.0.1", fleet_port, "studio", "studio-pw") as studio:
            # The bridge may still be subscribing on the fleet side: the speaker's online
            # availability, sent through it, says it is up.
            while studio.wait_for("availability", timeout=60, device_id="kid-bridge").payload != "online":
                pass
            reply = studio.send("kid-bridge", "ping", timeout=30)
        assert reply.ok and reply.result == {"via": "bridge"} and answered.is_set()
    finally:
        link.stop()
