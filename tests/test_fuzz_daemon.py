"""Thousands of generated payloads against the running daemon (real Mosquitto, real engine):
none may crash it and every one must be answered. Derandomized, so CI sees the same ones.

Each payload carries an MQTT 5 response topic and its number as correlation data, so even
a payload with no readable id has an answer that can be matched to it.
"""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hearmylove import protocol as p
from hearmylove.broker import Account
from hearmylove.engine.engine import Engine

from .rigs import running_daemon
from .test_hostile_mqtt import Bare

DEVICE, PARENT = "kid-fuzz", "mum"
DAD = Account("dad", "dad-pw", devices=(DEVICE,))
EXAMPLES = 2_000
FIELDS = ["sent_at", "story_id", "title", "lang", "voice", "at", "from_start", "volume", "settings"]
FIELDS += ["clear_quiet_hours", "pack", "activate", "max_volume", "quiet_hours", "start", "end", "extra"]
"""Every field name the protocol knows (but `text`: a valid story would be rendered, for minutes)."""

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "2026-11-21T19:30:00+08:00", "2026-11-21T19:30:00", "20:30", "en", "zh", "x" * 65])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,64}\Z"), scalars)
shaped = st.fixed_dictionaries({"id": ids}, optional={name: json_values for name in FIELDS}).map(json.dumps)
raw_json = json_values.map(json.dumps)
deep = st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n)
digits = st.integers(min_value=4_000, max_value=20_000).map(lambda n: '{"id": "digits", "volume": ' + "7" * n + "}")
payloads = st.one_of(shaped, shaped, raw_json, deep, digits, st.binary(max_size=300)).map(
    lambda v: v if isinstance(v, bytes) else v.encode()
)
names = st.sampled_from([*p.COMMANDS, "story.dance", "story.put/deeper", "", "ünïcode", "x" * 300])


class Fuzzer:
    """Sends one payload at a time and waits for its answer on the response topic."""

    def __init__(self, bare: Bare) -> None:
        self.bare = bare
        self.reply_topic = p.device_topic(DEVICE, "reply", "fuzz")
        self.sent = 0
        self.unanswered: list[tuple[str, bytes]] = []
        self.codes: dict[str, int] = {}

    def send(self, name: str, payload: bytes, retain: bool) -> None:
        self.sent += 1
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = self.reply_topic
        properties.CorrelationData = str(self.sent).encode()
        topic = p.device_topic(DEVICE, "cmd", name) if name else p.device_topic(DEVICE, "cmd")
        self.bare.client.publish(topic, payload, 1, retain, properties)  # the answer tells it arrived
        answer = self._answer(str(self.sent).encode())
        if answer is None:
            self.unanswered.append((name, payload[:200]))
            return
        code = "ok" if answer.get("ok") else str((answer.get("error") or {}).get("code"))
        self.codes[code] = self.codes.get(code, 0) + 1

    def _answer(self, correlation: bytes) -> dict[str, Any] | None:
        while True:
            try:
                message = self.bare.inbox.get(timeout=30)
            except queue.Empty:
                return None
            props = getattr(message, "properties", None)
            if message.topic == self.reply_topic and getattr(props, "CorrelationData", None) == correlation:
                return dict(json.loads(message.payload))


def test_generated_payloads_never_crash_the_daemon_and_each_is_answered(tmp_path: Path, engine: Engine) -> None:
    with running_daemon(tmp_path, engine, DEVICE, PARENT, others=(DAD,)) as rig:
        bare = Bare(rig.broker.port, DAD.username, DAD.password).subscribe(p.device_topic(DEVICE, "reply", "fuzz"))
        fuzzer = Fuzzer(bare)

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(name=names, payload=payloads, retain=st.booleans())
        def one(name: str, payload: bytes, retain: bool) -> None:
            assume(payload or not retain)  # an empty retained message clears one: no command, no answer
            fuzzer.send(name, payload, retain)

        one()
        crashed = not rig.thread.is_alive()
        print(f"{fuzzer.sent} payloads: {fuzzer.codes}")
        assert fuzzer.sent >= EXAMPLES
        assert (crashed, fuzzer.unanswered[:5], len(fuzzer.unanswered)) == (False, [], 0)
        assert rig.parent.send(DEVICE, "ping").ok
        bare.close()
