"""Pairing a parent's phone without typing: the installer's tooling prints a link (and its QR
code, also as a PNG) holding the broker's WebSocket address and the parent's credentials in the
fragment; a new password from the same tooling revokes it in the real broker."""

from __future__ import annotations

import getpass
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from hearmylove.broker import free_port
from hearmylove.errors import ConfigError
from hearmylove_remote import pairing

from .rigs import listening

TIMEOUT = 30
CLI = [str(Path(sys.executable).parent / "hearmylove-remote"), "broker"]


def admin(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--dir", str(folder)], capture_output=True, text=True, timeout=60)


def links(output: str) -> dict[str, str]:
    """Each parent's pairing link, as the tooling prints it under the parent's name."""
    lines = output.splitlines()
    return {lines[i - 1].split(":")[0]: line.strip() for i, line in enumerate(lines) if "#pair=" in line}


def test_adding_a_family_prints_a_pairing_link_and_qr_code_per_parent(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    assert (
        admin(folder, "init", "--host", "broker.example.org", "--app-url", "https://app.example.org/hml/").returncode
        == 0
    )
    added = admin(folder, "add-family", "wang", "--parent", "mum", "--parent", "dad", "--device", "kid-a")
    assert added.returncode == 0, added.stderr
    passwords = dict(line.strip().split("\t") for line in added.stdout.splitlines() if "\t" in line)
    found = links(added.stdout)
    assert sorted(found) == ["dad", "mum"], "a link for each parent, none for the speaker"
    for parent, link in found.items():
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.path, parts.query) == ("https", "app.example.org", "/hml/", "")
        paired = pairing.read(link)
        assert paired == pairing.Pairing(
            url="wss://broker.example.org:8884", username=parent, password=passwords[parent]
        )
        png = folder / "pairing" / f"{parent}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_mode & 0o777 == 0o600
    assert "\u2588" in added.stdout, "the QR code is drawn in the terminal"
    assert "#pair=" not in admin(folder, "add-device", "wang", "kid-b").stdout


def test_a_damaged_or_foreign_link_is_refused_by_name() -> None:
    good = pairing.link("https://h/", pairing.Pairing(url="wss://h:8884", username="mum", password="pw"))
    with pytest.raises(ConfigError, match="damaged"):
        pairing.read(good[:-6])
    with pytest.raises(ConfigError, match="not a pairing link"):
        pairing.read("https://h/?pair=abc")
    replaced = pairing.link("https://h/#old", pairing.Pairing(url="wss://h:8884", username="mum", password="pw"))
    assert replaced == good, "an app address's own fragment gives way to the pairing"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, int, str]]:
    """The family broker as installed (one family), started from its folder; the add-family output."""
    folder = tmp_path / "broker"
    mqtt_port, wss_port = free_port(), free_port()
    host = ["--host", "127.0.0.1", "--bind", "127.0.0.1"]
    assert admin(folder, "init", *host, "--mqtt-port", str(mqtt_port), "--wss-port", str(wss_port)).returncode == 0
    added = admin(folder, "add-family", "wang", "--parent", "mum", "--device", "kid-a", "--no-qr")
    assert added.returncode == 0, added.stderr
    conf = folder / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\n" + conf.read_text())  # the test runs as root
    with open(tmp_path / "mosquitto.log", "wb") as log:
        process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    while not (folder / "mosquitto.pid").exists() or not listening(wss_port):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "mosquitto.log").read_text()
        time.sleep(0.05)
    yield folder, wss_port, added.stdout
    process.terminate()
    process.wait(timeout=10)


def app_client(folder: Path, wss_port: int, paired: pairing.Pairing) -> tuple[mqtt.Client, queue.Queue[str]]:
    """Log in over TLS WebSockets as the app does with this pairing; the queue gets the CONNACK
    reason, then the reason of any disconnection."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, transport="websockets")
    client.username_pw_set(paired.username, paired.password)
    client.tls_set(ca_certs=str(folder / "tls" / "ca.crt"))
    client.reconnect_delay_set(60, 60)  # a dropped app does not come back within the test
    result: queue.Queue[str] = queue.Queue()
    client.on_connect = lambda cl, ud, flags, reason, props: result.put(str(reason))
    client.on_disconnect = lambda cl, ud, flags, reason, props: result.put(f"disconnected: {reason}")
    assert urlsplit(paired.url).port == wss_port
    client.connect("127.0.0.1", wss_port, keepalive=10)
    client.loop_start()
    return client, result


def login(folder: Path, wss_port: int, paired: pairing.Pairing) -> str:
    """The broker's CONNACK reason for this pairing."""
    client, result = app_client(folder, wss_port, paired)
    try:
        return result.get(timeout=TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_login(folder: Path, wss_port: int, paired: pairing.Pairing, expected: str) -> None:
    """The broker re-reads its passwords on the SIGHUP the tooling sends: wait for that, not a time."""
    deadline = time.monotonic() + TIMEOUT
    while (reason := login(folder, wss_port, paired)) != expected:
        assert time.monotonic() < deadline, f"still {reason!r}, expected {expected!r}"
        time.sleep(0.2)


def test_a_new_password_revokes_the_old_link_in_the_real_broker(running: tuple[Path, int, str]) -> None:
    folder, wss_port, added = running
    old = pairing.read(links(added)["mum"])
    phone, said = app_client(folder, wss_port, old)  # a phone paired with the old link, still open
    try:
        assert said.get(timeout=TIMEOUT) == "Success"
        renewed = admin(folder, "new-password", "mum", "--no-qr")
        assert said.get(timeout=TIMEOUT).startswith("disconnected"), "the reload drops a session on the old password"
    finally:
        phone.disconnect()
        phone.loop_stop()
    assert renewed.returncode == 0 and "mosquitto reloaded" in renewed.stdout, renewed.stdout + renewed.stderr
    new = pairing.read(links(renewed.stdout)["mum"])
    assert new.password != old.password and new.url == old.url
    wait_for_login(folder, wss_port, old, "Not authorized")
    assert login(folder, wss_port, new) == "Success"
    missing = admin(folder, "new-password", "stranger")
    assert missing.returncode == 2 and "no account 'stranger'" in missing.stderr
    assert os.stat(folder / "pairing" / "mum.png").st_mode & 0o777 == 0o600
