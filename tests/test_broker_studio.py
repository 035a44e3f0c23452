"""The studio's account on a family broker (`broker add-studio`), in a real Mosquitto with
the generated TLS config: voice packs to any speaker and their replies, nothing else."""

from __future__ import annotations

import getpass
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hearmylove.broker import free_port
from hearmylove_remote.cli import main as remote_cli
from hearmylove_remote.families import Broker

from .rigs import listening

TIMEOUT = 30


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, str], int]]:
    admin = Broker(tmp_path)
    port = free_port()
    admin.init("127.0.0.1", port, free_port(), bind="127.0.0.1")
    passwords = admin.add_family("wang", ["mum"], ["kid-a"]) | admin.add_family("li", ["dad"], ["kid-b"])
    passwords["studio"] = admin.add_studio("studio")
    conf = tmp_path / "run.conf"
    conf.write_text(f"user {getpass.getuser()}\n" + (tmp_path / "mosquitto.conf").read_text())
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    while not listening(port):
        assert process.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
        time.sleep(0.1)
    yield admin, passwords, port
    process.terminate()
    process.wait(timeout=10)


def connect(admin: Broker, port: int, user: str, password: str, subscribe: str) -> queue.Queue[mqtt.MQTTMessage]:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = queue.Queue[int]()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(admin.folder / "tls" / "ca.crt"))
    c.on_message = lambda _c, _u, m: got.put(m)
    c.on_subscribe = lambda *_: subscribed.put(1)
    c.on_connect = lambda cl, *_: cl.subscribe(subscribe, qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.get(timeout=TIMEOUT)
    got.client = c  # type: ignore[attr-defined]
    return got


def publish(messages: queue.Queue[mqtt.MQTTMessage], topic: str, payload: str = "{}") -> None:
    messages.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)  # type: ignore[attr-defined]


def test_the_studio_sends_packs_to_any_speaker_and_nothing_else(broker: tuple[Broker, dict[str, str], int]) -> None:
    admin, passwords, port = broker
    kid_a = connect(admin, port, "kid-a", passwords["kid-a"], "hml/v1/kid-a/cmd/#")
    kid_b = connect(admin, port, "kid-b", passwords["kid-b"], "hml/v1/kid-b/cmd/#")
    studio = connect(admin, port, "studio", passwords["studio"], "hml/v1/+/#")

    # A story from the studio is dropped by the ACL; the pack after it arrives first.
    publish(studio, "hml/v1/kid-a/cmd/story.put")
    publish(studio, "hml/v1/kid-a/cmd/voice.install")
    publish(studio, "hml/v1/kid-b/cmd/voice.install")
    assert kid_a.get(timeout=TIMEOUT).topic == "hml/v1/kid-a/cmd/voice.install"
    assert kid_b.get(timeout=TIMEOUT).topic == "hml/v1/kid-b/cmd/voice.install"

    # The studio hears replies, not a family's events.
    publish(kid_b, "hml/v1/kid-b/event/button.heart")
    publish(kid_b, "hml/v1/kid-b/reply/abc")
    assert studio.get(timeout=TIMEOUT).topic == "hml/v1/kid-b/reply/abc"


def test_a_studio_name_is_one_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Broker(tmp_path).init("127.0.0.1")
    Broker(tmp_path).add_family("wang", ["mum"], ["kid-a"])
    assert remote_cli(["broker", "add-studio", "studio", "--dir", str(tmp_path)]) == 0
    assert "studio\t" in capsys.readouterr().out
    assert remote_cli(["broker", "add-studio", "mum", "--dir", str(tmp_path)]) == 2
    assert "taken already" in capsys.readouterr().err
    assert "topic write hml/v1/+/cmd/voice.install" in (tmp_path / "acl").read_text()
