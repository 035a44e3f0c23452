"""The child's controls, driven through gpiozero's MockFactory: press pins, read the LED pin."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pydantic import ValidationError

from hearmylove.controls import Controls, ControlsConfig
from hearmylove.messages import Button, Light

pytestmark = pytest.mark.fast

HOLD = 0.3
DOUBLE = 0.2
CONFIG = ControlsConfig(hold_seconds=HOLD, double_press_seconds=DOUBLE, led_brightness=0.5)
QUIET = 0.5
"""How long to wait to be sure no further action comes (longer than the double-press window)."""
PATIENT = ControlsConfig(hold_seconds=HOLD, double_press_seconds=2.0)
"""For double presses: a window no busy machine can stretch two taps past."""


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


@pytest.fixture
def actions() -> queue.Queue[Button]:
    return queue.Queue()


@pytest.fixture
def controls(factory: MockFactory, actions: queue.Queue[Button]) -> Iterator[Controls]:
    with Controls(CONFIG, actions.put, pin_factory=factory) as controls:
        yield controls


def tap(pin: MockPWMPin, gap: float = 0.03) -> None:
    """Press and release, as a child does (pull-up wiring: pressed reads low)."""
    pin.drive_low()
    time.sleep(gap)
    pin.drive_high()


def assert_quiet(actions: queue.Queue[Button], seconds: float = QUIET) -> None:
    with pytest.raises(queue.Empty):
        extra = actions.get(timeout=seconds)
        pytest.fail(f"unexpected extra action {extra}")


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_single_press_is_play_pause_after_the_double_press_window(
    controls: Controls, factory: MockFactory, actions: queue.Queue[Button]
) -> None:
    big = factory.pin(CONFIG.big_button_pin)
    big.drive_low()
    released = time.monotonic()  # taken before the release, so a busy machine can only lengthen the wait
    big.drive_high()
    assert actions.get(timeout=2) == Button.PLAY_PAUSE
    assert time.monotonic() - released >= DOUBLE
    assert_quiet(actions)


def test_double_press_is_one_repeat(factory: MockFactory, actions: queue.Queue[Button]) -> None:
    with Controls(PATIENT, actions.put, pin_factory=factory):
        big = factory.pin(PATIENT.big_button_pin)
        tap(big)
        time.sleep(0.05)
        tap(big)
        assert actions.get(timeout=2) == Button.REPEAT
        assert_quiet(actions)


def test_second_press_held_long_is_still_only_repeat(factory: MockFactory, actions: queue.Queue[Button]) -> None:
    with Controls(PATIENT, actions.put, pin_factory=factory):
        big = factory.pin(PATIENT.big_button_pin)
        tap(big)
        tap(big, gap=HOLD * 2)
        assert actions.get(timeout=2) == Button.REPEAT
        assert_quiet(actions)


def test_hold_is_next_while_still_held_and_release_adds_nothing(
    controls: Controls, factory: MockFactory, actions: queue.Queue[Button]
) -> None:
    big = factory.pin(CONFIG.big_button_pin)
    big.drive_low()
    assert actions.get(timeout=2) == Button.NEXT
    assert big.state is False  # still held when NEXT arrived
    big.drive_high()
    assert_quiet(actions)


def test_heart_is_immediate(controls: Controls, factory: MockFactory, actions: queue.Queue[Button]) -> None:
    tap(factory.pin(CONFIG.heart_button_pin))
    assert actions.get_nowait() == Button.HEART
    assert_quiet(actions, 0.1)


def test_failing_handler_is_logged_and_buttons_keep_working(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    got: queue.Queue[Button] = queue.Queue()

    def handler(action: Button) -> None:
        got.put(action)
        if got.qsize() == 1:
            raise RuntimeError("handler broke")

    with caplog.at_level(logging.ERROR, logger="hearmylove.controls"), Controls(CONFIG, handler, factory):
        heart = factory.pin(CONFIG.heart_button_pin)
        tap(heart)
        tap(heart)
        tap(factory.pin(CONFIG.big_button_pin))
        assert [got.get(timeout=2) for _ in range(3)] == [Button.HEART, Button.HEART, Button.PLAY_PAUSE]
    assert "HEART" in caplog.text and "handler broke" in caplog.text


def test_close_drops_a_pending_play_pause(factory: MockFactory, actions: queue.Queue[Button]) -> None:
    controls = Controls(CONFIG, actions.put, pin_factory=factory)
    tap(factory.pin(CONFIG.big_button_pin))
    controls.close()
    controls.close()
    assert_quiet(actions, DOUBLE * 2)


def test_playing_is_solid_at_brightness_and_off_is_dark(controls: Controls, factory: MockFactory) -> None:
    led = factory.pin(CONFIG.led_pin)
    controls.led(Light.PLAYING)
    assert controls.pattern == Light.PLAYING
    assert led.state == pytest.approx(0.5)
    controls.led(Light.OFF)
    assert led.state == 0


def blink_intervals(controls: Controls, led: MockPWMPin, pattern: Light, toggles: int) -> list[float]:
    led.clear_states()
    controls.led(pattern)
    wait_for(lambda: len(led.states) >= toggles + 2)
    controls.led(Light.OFF)
    states = led.states[: toggles + 2]
    assert {s.state for s in states[1:]} == {0.5, 0.0}  # full brightness scaled to 0.5, and dark
    return [s.timestamp for s in states[2:]]  # time each state lasted before the next toggle


def test_blinks_toggle_at_their_rates(controls: Controls, factory: MockFactory) -> None:
    led = factory.pin(CONFIG.led_pin)
    error = blink_intervals(controls, led, Light.ERROR, toggles=6)
    new_story = blink_intervals(controls, led, Light.NEW_STORY, toggles=3)
    # 5 Hz is 0.1 s on, 0.1 s off; 1 Hz is 0.5 s on, 0.5 s off. A toggle never comes early (a busy
    # machine only makes it late), and the error blink is faster than a new-story toggle can ever be.
    assert min(error) >= 0.09 and min(new_story) >= 0.45
    assert min(error) < 0.45


def test_ready_breathes_through_intermediate_values(controls: Controls, factory: MockFactory) -> None:
    led = factory.pin(CONFIG.led_pin)
    led.clear_states()
    controls.led(Light.READY)
    wait_for(lambda: sum(0 < s.state < 0.5 for s in led.states) >= 5)
    assert max(s.state for s in led.states) <= 0.5


def test_duplicate_pins_are_named() -> None:
    with pytest.raises(ValidationError, match=r"big_button_pin and led_pin are both GPIO 17"):
        ControlsConfig(led_pin=17)


def test_pin_outside_bcm_range_is_named() -> None:
    with pytest.raises(ValidationError, match=r"(?s)heart_button_pin.*less than or equal to 27"):
        ControlsConfig(heart_button_pin=99)


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="led_colour"):
        ControlsConfig.model_validate({"led_colour": "red"})
