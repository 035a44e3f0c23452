"""The child's side, end to end: buttons on gpiozero MockFactory pins drive the real
daemon (real engine, real broker), the LED follows, and the parent sees the heart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hearmylove.audio import WavFileOutput
from hearmylove.config import DaemonConfig
from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove.messages import Light
from hearmylove.mqtt import Incoming
from hearmylove.protocol import COMMANDS
from hearmylove.remote import Remote
from tests.test_audio import wait_until

from .rigs import running_daemon

DEVICE, PARENT = "kid-007", "dad"


@pytest.fixture
def rig(tmp_path: Path, engine: Engine) -> Iterator[tuple[Daemon, Remote, MockFactory]]:
    # Windows no busy machine stretches a tap or a double press past (a press is 0.05 s, a hold 2.5 s).
    controls = {"hold_seconds": 1.0, "double_press_seconds": 1.0, "led_brightness": 0.6}
    with running_daemon(tmp_path, engine, DEVICE, PARENT, controls=controls) as r:
        yield r.daemon, r.parent, r.pins


def press(pin: MockPWMPin, seconds: float = 0.05) -> None:
    pin.drive_low()
    time.sleep(seconds)
    pin.drive_high()


def test_buttons_tell_stories_and_the_light_follows(rig: tuple[Daemon, Remote, MockFactory]) -> None:
    daemon, dad, factory = rig
    big, heart, led = factory.pin(17), factory.pin(27), factory.pin(18)
    for story_id, text in (("moon", "The moon said good night."), ("sun", "The sun said good morning.")):
        assert dad.send(DEVICE, "story.put", story_id=story_id, title=story_id, text=text, lang="en").ok
    assert daemon.controls.pattern is Light.NEW_STORY

    press(heart)
    dad.wait_for("event", "button.heart", timeout=10)

    press(big)  # a single press plays the newest story nobody has heard
    started = dad.wait_for("event", "story.started", timeout=60)
    assert started.payload["story_id"] == "sun"
    assert daemon.controls.pattern is Light.PLAYING and led.state == pytest.approx(0.6)
    dad.wait_for("event", "story.finished", timeout=60)

    press(big, seconds=2.5)  # hold: the next story
    assert dad.wait_for("event", "story.started", timeout=60).payload["story_id"] == "moon"
    dad.wait_for("event", "story.finished", timeout=60)

    press(big)
    time.sleep(0.05)
    press(big)  # double press: again from the start
    assert dad.wait_for("event", "story.started", timeout=60).payload["story_id"] == "moon"
    dad.wait_for("event", "story.finished", timeout=60)
    wait_until(lambda: daemon.controls.pattern is Light.READY, timeout=5)  # the light follows the event

    assert dad.send(DEVICE, "settings.put", settings={"led_brightness": 0.2}).ok
    assert daemon.controls.brightness == pytest.approx(0.2)


_payloads = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(
        st.sampled_from(["id", "story_id", "text", "title", "lang", "volume", "at", "settings", "junk"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
        max_size=6,
    ).map(lambda d: __import__("json").dumps(d, default=str).encode()),
)


@pytest.fixture
def still_daemon(tmp_path: Path, engine: Engine) -> Iterator[Daemon]:
    """A daemon whose loop is not running: the test thread is its only caller."""
    config = DaemonConfig(device_id=DEVICE, state_dir=tmp_path / "state", mqtt={"tls": False, "port": 1})
    factory = MockFactory(pin_class=MockPWMPin)
    daemon = Daemon(config, engine=engine, output=WavFileOutput(tmp_path / "out.wav"), pin_factory=factory)
    yield daemon
    daemon.close()
    factory.reset()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from([*COMMANDS, "nope"]), payload=_payloads)
@example(name="story.put", payload=b'{"id": "+"}')  # once crashed the reply: a wildcard topic
@example(name="ping", payload=b'{"id": "a/b"}')
def test_fuzzed_commands_always_get_a_reply_and_never_crash(still_daemon: Daemon, name: str, payload: bytes) -> None:
    daemon = still_daemon
    reply = daemon.command(Incoming(name, payload, mid=0, qos=0, response_topic=None, correlation_data=None))
    assert reply.ok or (reply.error is not None and reply.error.message)
    while not daemon.inputs.empty():  # what the loop would have done with the player's news
        item = daemon.inputs.get()
        if not isinstance(item, Incoming):
            daemon.controller.dispatch(item)
    daemon.controller.tick()
