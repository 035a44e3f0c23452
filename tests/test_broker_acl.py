"""The family broker as an installer sets it up, in a real Mosquitto: TLS on MQTT and
WebSockets, a password per parent and per speaker, and ACLs that keep families apart."""

from __future__ import annotations

import getpass
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hearmylove.broker import free_port
from hearmylove_remote.families import Broker

TIMEOUT = 10


@dataclass
class Running:
    folder: Path
    mqtt_port: int
    wss_port: int
    passwords: dict[str, str]

    @property
    def ca(self) -> str:
        return str(self.folder / "tls" / "ca.crt")


@pytest.fixture(scope="module")
def family_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("broker")
    admin = Broker(folder)
    mqtt_port, wss_port = free_port(), free_port()
    admin.init("127.0.0.1", mqtt_port, wss_port, bind="127.0.0.1", persistence=folder)
    passwords = admin.add_family("wang", parents=["mum"], devices=["kid-a"])
    passwords |= admin.add_family("li", parents=["dad"], devices=["kid-b"])
    passwords |= {"grandma": admin.add_member("wang", "grandma", "parent")}
    conf = folder / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\n" + conf.read_text())  # the test runs as root
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    running = Running(folder, mqtt_port, wss_port, passwords)
    while time.monotonic() < deadline:
        try:
            client(running, "mum").disconnect()
            break
        except (ConnectionError, OSError):
            time.sleep(0.1)
    yield running
    process.terminate()
    process.wait(timeout=10)


_open: list[mqtt.Client] = []


@pytest.fixture(autouse=True)
def _one_connection_per_account() -> Iterator[None]:
    """The broker binds client ids to accounts: a test's clients leave before the next logs in."""
    yield
    while _open:
        c = _open.pop()
        c.disconnect()
        c.loop_stop()


def client(
    b: Running, user: str | None, password: str | None = None, *, websockets: bool = False, tls: bool = True
) -> mqtt.Client:
    """Connected client, or ConnectionError naming why the broker said no."""
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,
        transport="websockets" if websockets else "tcp",
    )
    if user:
        c.username_pw_set(user, password if password is not None else b.passwords[user])
    if tls:
        c.tls_set(ca_certs=b.ca)
    result: queue.Queue[str] = queue.Queue()
    c.on_connect = lambda cl, ud, flags, reason, props: result.put(str(reason))
    c.inbox = queue.Queue()  # type: ignore[attr-defined]
    c.on_message = lambda cl, ud, msg: cl.inbox.put((msg.topic, msg.payload))
    c.connect("127.0.0.1", b.wss_port if websockets else b.mqtt_port, keepalive=10)
    c.loop_start()
    try:
        reason = result.get(timeout=TIMEOUT)
    except queue.Empty:
        c.loop_stop()
        raise ConnectionError("no CONNACK") from None
    if reason != "Success":
        c.loop_stop()
        raise ConnectionError(reason)
    _open.append(c)
    return c


def subscribed(c: mqtt.Client, topic: str) -> mqtt.Client:
    done: queue.Queue[object] = queue.Queue()
    c.on_subscribe = lambda cl, ud, mid, codes, props: done.put(codes)
    c.subscribe(topic, qos=1)
    done.get(timeout=TIMEOUT)
    return c


def publish(c: mqtt.Client, topic: str, payload: str) -> None:
    c.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)


def received(c: mqtt.Client, wait: float = 1.5) -> list[str]:
    got = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got.append(c.inbox.get(timeout=0.1)[0])  # type: ignore[attr-defined]
        except queue.Empty:
            pass
    return got


def test_anonymous_and_wrong_passwords_are_refused(family_broker: Running) -> None:
    with pytest.raises(ConnectionError, match="Not authorized|Bad user name or password"):
        client(family_broker, None)
    with pytest.raises(ConnectionError, match="Not authorized|Bad user name or password"):
        client(family_broker, "mum", "guess")


def test_plain_mqtt_is_not_spoken_on_the_tls_port(family_broker: Running) -> None:
    with pytest.raises((ConnectionError, OSError)):
        client(family_broker, "mum", tls=False)


def test_a_parent_commands_their_own_speaker_over_tls(family_broker: Running) -> None:
    kid = subscribed(client(family_broker, "kid-a"), "hml/v1/kid-a/cmd/#")
    mum = client(family_broker, "mum")
    publish(mum, "hml/v1/kid-a/cmd/ping", '{"id": "1"}')
    assert received(kid) == ["hml/v1/kid-a/cmd/ping"]
    grandma = client(family_broker, "grandma")
    publish(grandma, "hml/v1/kid-a/cmd/ping", '{"id": "2"}')
    assert received(kid) == ["hml/v1/kid-a/cmd/ping"], "a parent added later reaches the family's speaker"


def test_a_parent_cannot_command_or_watch_another_familys_speaker(family_broker: Running) -> None:
    kid_b = subscribed(client(family_broker, "kid-b"), "hml/v1/kid-b/cmd/#")
    mum = subscribed(client(family_broker, "mum"), "hml/v1/kid-b/#")
    publish(mum, "hml/v1/kid-b/cmd/story.tell", '{"id": "x", "text": "intruder"}')
    assert received(kid_b) == []
    publish(kid_b, "hml/v1/kid-b/state", '{"state": "idle"}')
    assert received(mum) == [], "mum must not see another family's speaker"


def test_a_speaker_stays_in_its_own_subtree(family_broker: Running) -> None:
    dad = subscribed(client(family_broker, "dad"), "hml/v1/kid-b/#")
    kid_a = subscribed(client(family_broker, "kid-a"), "hml/v1/kid-b/cmd/#")
    publish(kid_a, "hml/v1/kid-b/state", '{"state": "hijacked"}')
    publish(kid_a, "hml/v1/kid-b/event/story.finished", "{}")
    assert received(dad) == [], "a speaker cannot write another speaker's topics"
    publish(dad, "hml/v1/kid-b/cmd/ping", '{"id": "3"}')
    assert received(kid_a) == [], "a speaker cannot read another speaker's commands"
    mum = subscribed(client(family_broker, "mum"), "hml/v1/kid-a/#")
    publish(kid_a, "hml/v1/kid-a/state", '{"state": "idle"}')
    assert received(mum) == ["hml/v1/kid-a/state"]


def test_the_web_app_listener_speaks_mqtt_over_tls_websockets(family_broker: Running) -> None:
    kid = subscribed(client(family_broker, "kid-a"), "hml/v1/kid-a/cmd/#")
    mum = client(family_broker, "mum", websockets=True)
    publish(mum, "hml/v1/kid-a/cmd/ping", '{"id": "5"}')
    assert received(kid) == ["hml/v1/kid-a/cmd/ping"]


def test_the_admin_command_refuses_taken_and_bad_names(tmp_path: Path) -> None:
    run = [str(Path(sys.executable).parent / "hearmylove-remote"), "broker"]
    folder = ["--dir", str(tmp_path / "b")]
    assert subprocess.run([*run, "init", "--host", "broker.example.org", *folder], capture_output=True).returncode == 0
    ok = subprocess.run(
        [*run, "add-family", "wang", "--parent", "mum", "--device", "kid-a", *folder], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "mum\t" in ok.stdout and "kid-a\t" in ok.stdout
    taken = subprocess.run([*run, "add-device", "wang", "mum", *folder], capture_output=True, text=True)
    assert taken.returncode == 2 and "the name 'mum' is taken already" in taken.stderr
    bad = subprocess.run([*run, "add-parent", "wang", "Bad Name", *folder], capture_output=True, text=True)
    assert bad.returncode == 2 and "'Bad Name' is not a valid name" in bad.stderr
    nofam = subprocess.run([*run, "add-parent", "zhao", "aunt", *folder], capture_output=True, text=True)
    assert nofam.returncode == 2 and "no family 'zhao'" in nofam.stderr
    acl = (tmp_path / "b" / "acl").read_text()
    assert "user mum" in acl and "topic write hml/v1/kid-a/cmd/#" in acl


def test_the_speakers_own_link_connects_over_tls_with_the_family_ca(family_broker: Running) -> None:
    from hearmylove.config import MqttConfig
    from hearmylove.mqtt import MqttLink

    mum = subscribed(client(family_broker, "mum"), "hml/v1/kid-a/availability")
    config = MqttConfig(
        host="127.0.0.1",
        port=family_broker.mqtt_port,
        tls=True,
        ca_file=Path(family_broker.ca),
        username="kid-a",
        password=family_broker.passwords["kid-a"],
    )
    link = MqttLink(config, "kid-a", on_command=lambda incoming: None)
    link.start()
    try:
        assert link.connected.wait(TIMEOUT), "the speaker could not connect over TLS"
        topic, payload = mum.inbox.get(timeout=TIMEOUT)  # type: ignore[attr-defined]
        assert (topic, payload) == ("hml/v1/kid-a/availability", b"online")
    finally:
        link.stop()
    assert mum.inbox.get(timeout=TIMEOUT)[1] == b"offline"  # type: ignore[attr-defined]


def test_one_account_cannot_log_in_under_another_accounts_client_id(family_broker: Running) -> None:
    kid = subscribed(client(family_broker, "kid-a"), "hml/v1/kid-a/cmd/#")
    gone: queue.Queue[object] = queue.Queue()
    kid.on_disconnect = lambda cl, ud, flags, reason, props: gone.put(reason)
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kid-a", protocol=mqtt.MQTTv5)
    intruder.username_pw_set("dad", family_broker.passwords["dad"])
    intruder.tls_set(ca_certs=family_broker.ca)
    intruder.connect("127.0.0.1", family_broker.mqtt_port, keepalive=10)
    intruder.loop_start()
    _open.append(intruder)
    publish(client(family_broker, "mum"), "hml/v1/kid-a/cmd/ping", '{"id": "6"}')
    assert received(kid) == ["hml/v1/kid-a/cmd/ping"], "the speaker kept its connection and its session"
    assert gone.empty()
