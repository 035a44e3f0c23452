"""Hostile input and bad days, from outside: a real Mosquitto configured as shipped, the
real daemon (in a thread, or as its own process where it must be stopped, started or
weighed), and bare MQTT 5 clients that send what the parent's tools never would."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hearmylove import protocol as p
from hearmylove.broker import Account, LocalBroker
from hearmylove.engine.engine import Engine
from hearmylove.remote import Remote

from .rigs import Speaker, drained, running_daemon

DEVICE, PARENT = "kid-017", "mum"
DAD = Account("dad", "dad-pw", devices=(DEVICE,))
"""A second parent of the family: one account is one connection (client ids are account names)."""
TIMEOUT = 30


class Bare:
    """A bare MQTT 5 client: odd properties, retained commands, foreign client ids, huge payloads."""

    def __init__(self, port: int, user: str, password: str, client_id: str = "", clean_start: bool = True) -> None:
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.gone = threading.Event()
        self.acked: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        connected: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, reason, props: connected.put((reason, flags))
        self.client.on_message = lambda c, u, message: self.inbox.put(message)
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.gone.set()
        self.client.on_publish = lambda c, u, mid, reason, props: self.acked.put(mid)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.acked.put(mid)
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start)
        self.client.loop_start()
        reason, self.flags = connected.get(timeout=TIMEOUT)
        assert not reason.is_failure, reason

    def subscribe(self, topic: str) -> Bare:
        _, mid = self.client.subscribe(topic, qos=1)
        self._wait_ack(mid)
        return self

    def command(self, name: str, payload: bytes | str, retain: bool = False, response_topic: str | None = None) -> None:
        properties = None
        if response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = response_topic
            properties.CorrelationData = b"poison"
        info = self.client.publish(p.device_topic(DEVICE, "cmd", name), payload, 1, retain, properties)
        self._wait_ack(info.mid)

    def _wait_ack(self, mid: int) -> None:
        while self.acked.get(timeout=TIMEOUT) != mid:
            pass

    def next(self, suffix: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message on hml/v1/<device>/<suffix>, as JSON; others are passed over."""
        topic = p.device_topic(DEVICE, suffix)
        while True:
            message = self.inbox.get(timeout=timeout)
            if message.topic == topic:
                return dict(json.loads(message.payload))

    def before(self, suffix: str, timeout: float = TIMEOUT) -> list[str]:
        """The topics (after hml/v1/<device>/) of what came before the next message on `suffix`."""
        topic, seen = p.device_topic(DEVICE, suffix), []
        while (message := self.inbox.get(timeout=timeout)).topic != topic:
            seen.append(message.topic.removeprefix(p.device_topic(DEVICE, "")))
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bare_dad(broker: LocalBroker) -> Bare:
    return Bare(broker.port, DAD.username, DAD.password).subscribe(p.device_topic(DEVICE, "#"))


def now() -> str:
    return datetime.now(UTC).isoformat()


def test_a_poison_response_topic_ends_in_one_outcome_and_the_speaker_answers_on(tmp_path: Path, engine: Engine) -> None:
    with running_daemon(tmp_path, engine, DEVICE, PARENT, others=(DAD,)) as rig:
        dad = bare_dad(rig.broker)
        for n, poison in enumerate(("reply/+", "reply/#", "reply/a/+/b", "reply/")):
            dad.command("ping", json.dumps({"id": f"poison-{n}"}), response_topic=p.device_topic(DEVICE, poison))
            assert dad.next(f"reply/poison-{n}")["ok"], "an unusable response topic falls back to reply/<id>"
        # More than the broker's in-flight window (20), without an id: each gets an error event.
        for _ in range(25):
            dad.command("ping", b"{}", response_topic=p.device_topic(DEVICE, "reply/#"))
        for _ in range(25):
            event = p.ErrorEvent.model_validate(dad.next("event/error"))
            assert (event.code, event.command) == ("invalid", "ping") and "id" in event.message
        assert rig.parent.send(DEVICE, "ping").ok, "the speaker still answers"
        # Acknowledged, so nothing comes again: the speaker answers in order, and nothing but the
        # parent's ping came between the 25 errors and the answer to this one.
        dad.command("ping", json.dumps({"id": "after-the-flood"}))
        assert "event/error" not in dad.before("reply/after-the-flood")
        dad.close()


def test_a_retained_or_stale_command_is_refused_not_executed(tmp_path: Path, engine: Engine) -> None:
    tell = {"id": "retained-tell", "text": "The owl said hello.", "lang": "en"}
    with running_daemon(tmp_path, engine, DEVICE, PARENT, others=(DAD,)) as rig:
        dad = bare_dad(rig.broker)
        dad.command("story.tell", json.dumps(tell), retain=True)
        reply = p.Reply.model_validate(dad.next("reply/retained-tell"))
        assert reply.error is not None and reply.error.code == "retained", reply
        month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        stale = rig.parent.send(DEVICE, "story.tell", text="The owl said hello.", lang="en", sent_at=month_ago)
        assert stale.error is not None and stale.error.code == "expired" and month_ago in stale.error.message
        dad.close()
    # Broker and speaker start again from their folders: the retained command is still on the
    # broker, and the speaker's resubscription does not replay it.
    with running_daemon(tmp_path, engine, DEVICE, PARENT, others=(DAD,)) as rig:
        dad = bare_dad(rig.broker)
        assert dad.next("cmd/story.tell")["id"] == "retained-tell"
        # The speaker runs commands in order: once this list is answered, a replayed tell would have
        # stored its inline story (and been answered before it).
        assert rig.parent.send(DEVICE, "story.list").result["stories"] == []
        assert ("reply", "retained-tell") not in [(m.kind, m.name) for m in drained(rig.parent)]
        dad.close()


def test_deep_or_huge_json_gets_an_error_naming_it_with_the_id_kept(tmp_path: Path, engine: Engine) -> None:
    with running_daemon(tmp_path, engine, DEVICE, PARENT, others=(DAD,)) as rig:
        dad = bare_dad(rig.broker)
        dad.command("story.put", '{"id": "deep", "text": ' + "[" * 10_000 + "]" * 10_000 + "}")
        deep = p.Reply.model_validate(dad.next("reply/deep"))
        assert deep.error is not None and (deep.error.code, "deeply") == (
            "bad_json",
            deep.error.message[-len("deeply") :],
        )
        dad.command("volume.set", '{"id": "digits", "volume": ' + "9" * 20_000 + "}")
        digits = p.Reply.model_validate(dad.next("reply/digits"))
        assert digits.error is not None and digits.error.code == "bad_json" and "number" in digits.error.message
        dad.command("story.put", '{"id": "bomb", "x": [' + "{}," * 200_000 + "{}]}")
        bomb = p.Reply.model_validate(dad.next("reply/bomb"))
        assert bomb.error is not None and bomb.error.code == "too_large" and "JSON values" in bomb.error.message
        # Without a readable id: the ErrorEvent the schema describes, on event/error.
        dad.command("story.put", "[" * 10_000)
        payload = dad.next("event/error")
        assert set(payload) == {"at", "code", "message", "command", "id"} and payload["command"] == "story.put"
        assert p.ErrorEvent.model_validate(payload).code == "bad_json"
        assert rig.parent.send(DEVICE, "ping").ok
        dad.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    accounts = [
        Account(DEVICE, "device-secret"),
        Account(PARENT, "parent-secret", devices=(DEVICE,)),
        DAD,
        Account("eve", "eve-secret", devices=("kid-eve",)),
    ]
    with LocalBroker(tmp_path / "broker", accounts) as running:
        yield running


@pytest.fixture
def speaker(tmp_path: Path, broker: LocalBroker, model_dir: Path) -> Iterator[Speaker]:
    s = Speaker(tmp_path, broker, DEVICE)
    s.start()
    yield s
    s.stop()


def mum(broker: LocalBroker) -> Remote:
    return Remote("127.0.0.1", broker.port, PARENT, "parent-secret").connect()


def wait_availability(remote: Remote, value: str) -> None:
    while remote.wait_for("availability", timeout=120, device_id=DEVICE).payload != value:
        pass


def test_a_foreign_client_id_cannot_take_the_speakers_session(broker: LocalBroker, speaker: Speaker) -> None:
    claims = (DEVICE, f"hml-device-{DEVICE}")  # its account name, and the id it used before
    with mum(broker) as parent:
        wait_availability(parent, "online")
        for claimed in claims:
            Bare(broker.port, "eve", "eve-secret", client_id=claimed, clean_start=False).close()
        # The speaker was not thrown off: it answers, it never went offline before that answer
        # (its last will would have come first), and it connected only once.
        assert parent.send(DEVICE, "ping").ok
        assert ("availability", "offline") not in [(m.kind, m.payload) for m in drained(parent)]
        assert speaker.log().count("connected to 127.0.0.1") == 1, speaker.log()
        speaker.stop()
        wait_availability(parent, "offline")
        parent.publish(DEVICE, "ping", json.dumps({"id": "queued-while-away"}))
        for claimed in claims:  # a session taken over here would end at this disconnect
            Bare(broker.port, "eve", "eve-secret", client_id=claimed, clean_start=False).close()
        speaker.start()
        assert parent.wait_for("reply", "queued-while-away", timeout=120).payload["ok"]


def peak_rss(pid: int) -> int:
    """The process's peak resident memory since the last reset (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_an_oversize_payload_is_refused_and_the_speakers_memory_stays_bounded(
    broker: LocalBroker, speaker: Speaker
) -> None:
    assert speaker.process is not None
    pid = speaker.process.pid
    with mum(broker) as parent:
        wait_availability(parent, "online")
        assert parent.send(DEVICE, "ping").ok
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from here
        before, rss_before = peak_rss(pid), psutil.Process(pid).memory_info().rss
        # Bigger than any legitimate message: the broker drops the sender and passes nothing on.
        dad = Bare(broker.port, DAD.username, DAD.password)
        dad.client.publish(p.device_topic(DEVICE, "cmd", "story.put"), b'{"id": "huge", "text": "' + b"a" * (100 << 20))
        for _ in range(TIMEOUT * 10):  # the broker's answer: a disconnect (or, unguarded, a PUBACK)
            if dad.gone.wait(0.1) or not dad.acked.empty():
                break
        refused_at_broker = dad.gone.is_set()
        dad.client.loop_stop()
        # Under the broker's cap, over this command's limit: an error reply that keeps the id.
        big = parent.send(DEVICE, "story.put", story_id="big", title="Big", text="a" * (4 << 20), timeout=60)
        assert big.error is not None and big.error.code == "too_large", big
        # A voice.install that would parse into millions of objects.
        parent.publish(DEVICE, "voice.install", '{"id": "bomb", "pack": "x", "x": [' + "{}," * (2 << 20) + "{}]}")
        bomb = parent.wait_for("reply", "bomb", timeout=60).payload
        assert bomb["error"]["code"] == "too_large" and "JSON values" in bomb["error"]["message"]
        assert parent.send(DEVICE, "ping").ok
        after, rss_after = peak_rss(pid), psutil.Process(pid).memory_info().rss
    mib = [round(x / 2**20) for x in (before, after, rss_before, rss_after)]
    print(f"speaker peak RSS {mib[0]} -> {mib[1]} MiB, RSS {mib[2]} -> {mib[3]} MiB")
    assert after - before < 64 << 20, "a payload the speaker refuses must not cost it its size several times over"
    assert refused_at_broker and speaker.process.poll() is None


def test_commands_the_broker_acknowledged_survive_its_kill_9(broker: LocalBroker, speaker: Speaker) -> None:
    ids = [f"while-away-{n}" for n in range(3)]
    with mum(broker) as parent:
        wait_availability(parent, "online")
        speaker.stop()
        wait_availability(parent, "offline")
    dad = Bare(broker.port, DAD.username, DAD.password)
    for command_id in ids:
        dad.command("ping", json.dumps({"id": command_id, "sent_at": now()}))  # waits for the PUBACK
    # The broker saves at the end of the loop that acknowledged; any later round trip is served after it.
    dad.subscribe(p.device_topic(DEVICE, "state"))
    dad.close()
    broker.kill()
    broker.start()
    with mum(broker) as parent:
        speaker.start()
        for command_id in ids:
            assert parent.wait_for("reply", command_id, timeout=120).payload["ok"], command_id
