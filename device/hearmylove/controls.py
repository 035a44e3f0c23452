"""The child's controls: one big button, one heart button and one PWM LED, via gpiozero.

A child cannot read an error message, so nothing here may crash the daemon: a failing
action handler is logged and the buttons keep working. Timings and pins come from
`ControlsConfig`; tests drive the real class through gpiozero's `MockFactory`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from itertools import combinations, cycle
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .messages import Button, Light

if TYPE_CHECKING:  # imported where the pins are opened: reading the config must not load GPIO code
    import gpiozero

log = logging.getLogger(__name__)

BREATH_SECONDS = 3.0
"""One slow in-and-out of the READY breathing."""
BREATH_FPS = 25
"""Brightness steps a second while breathing (gpiozero's own `pulse` uses 25)."""


class ControlsConfig(BaseModel):
    """Pins (BCM numbers) and timings of the child's controls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    big_button_pin: int = Field(17, ge=0, le=27)
    """Press = play/pause, hold = next story, double press = repeat. BCM number 0..27."""
    heart_button_pin: int = Field(27, ge=0, le=27)
    """Sends a heart to the parent. BCM number 0..27."""
    led_pin: int = Field(18, ge=0, le=27)
    """The one status LED, driven by PWM. BCM number 0..27."""
    pull_up: bool = True
    """Buttons wired to ground with the internal pull-up: pressed reads low."""
    bounce_ms: int = Field(30, ge=0, le=1000)
    """Contact bounce ignored after an edge; 0 turns debouncing off."""
    hold_seconds: float = Field(1.0, gt=0.0, le=10.0)
    """Keep the big button down this long for the next story."""
    double_press_seconds: float = Field(0.4, gt=0.0, le=2.0)
    """Gap after a release within which a second press means repeat; play/pause waits this long."""
    led_brightness: float = Field(1.0, ge=0.0, le=1.0)
    """Top LED brightness (PWM duty cycle); every pattern is scaled by it, e.g. dimmer at night."""

    @model_validator(mode="after")
    def _distinct_pins(self) -> ControlsConfig:
        pins = {name: getattr(self, name) for name in ("big_button_pin", "heart_button_pin", "led_pin")}
        for first, second in combinations(pins, 2):
            if pins[first] == pins[second]:
                raise ValueError(f"{first} and {second} are both GPIO {pins[first]!r}; give each control its own pin")
        return self


BLINK_HZ = {Light.NEW_STORY: 1.0, Light.ERROR: 5.0}


def _breathing(brightness: float) -> Iterator[float]:
    """One cosine breath from dark to `brightness` and back, forever (softer than a linear fade)."""
    steps = round(BREATH_SECONDS * BREATH_FPS)
    return cycle([brightness * (1 - math.cos(2 * math.pi * i / steps)) / 2 for i in range(steps)])


class Controls:
    """Turns button edges into `Button`s and shows `Light`s.

    Big-button timing: a short press waits `double_press_seconds` after release before it
    becomes PLAY_PAUSE, because only then is it known not to be the first of a double press.
    A press that yields REPEAT or NEXT is "used up": its hold and release add nothing more.
    """

    def __init__(
        self,
        config: ControlsConfig,
        on_action: Callable[[Button], None],
        pin_factory: gpiozero.Factory | None = None,
    ) -> None:
        self.config = config
        self._on_action = on_action
        self._lock = threading.Lock()  # guards the big button's press state
        self._led_lock = threading.Lock()
        self._down = False
        self._used = False
        self._pending: threading.Timer | None = None
        self._closed = False
        self._pattern = Light.OFF
        self._brightness = config.led_brightness
        self._devices: list[gpiozero.Device] = []
        bounce = config.bounce_ms / 1000 or None
        import gpiozero  # here, not at the top: the config (ControlsConfig) is read without GPIO code

        try:
            self._big = gpiozero.Button(
                config.big_button_pin,
                pull_up=config.pull_up,
                bounce_time=bounce,
                hold_time=config.hold_seconds,
                pin_factory=pin_factory,
            )
            self._devices.append(self._big)
            self._heart = gpiozero.Button(
                config.heart_button_pin, pull_up=config.pull_up, bounce_time=bounce, pin_factory=pin_factory
            )
            self._devices.append(self._heart)
            self._led = gpiozero.PWMLED(config.led_pin, pin_factory=pin_factory)
            self._devices.append(self._led)
        except Exception:
            self.close()
            raise
        self._big.when_pressed = self._big_pressed
        self._big.when_held = self._big_held
        self._big.when_released = self._big_released
        self._heart.when_pressed = self._heart_pressed

    # -- buttons: decide under the lock, call on_action outside it --

    def _big_pressed(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._down = True
            second = self._used = self._pending is not None
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
        if second:
            self._emit(Button.REPEAT)

    def _big_held(self) -> None:
        with self._lock:
            # `_down` settles a release racing with the hold thread: whichever came first wins.
            if self._closed or not self._down or self._used:
                return
            self._used = True
        self._emit(Button.NEXT)

    def _big_released(self) -> None:
        with self._lock:
            self._down = False
            if self._closed or self._used:
                return
            timer = threading.Timer(self.config.double_press_seconds, self._single_press_expired)
            timer.daemon = True
            self._pending = timer
            timer.start()

    def _single_press_expired(self) -> None:
        with self._lock:
            # A cancelled timer may still run; only the current one counts.
            if self._closed or self._pending is not threading.current_thread():
                return
            self._pending = None
        self._emit(Button.PLAY_PAUSE)

    def _heart_pressed(self) -> None:
        if not self._closed:
            self._emit(Button.HEART)

    def _emit(self, action: Button) -> None:
        """Call on_action; a child's button must never take the daemon down."""
        log.debug("button action %s", action.name)
        try:
            self._on_action(action)
        except Exception:
            log.exception("handling button action %s failed; the buttons keep working", action.name)

    # -- LED --

    @property
    def pattern(self) -> Light:
        """The pattern the LED shows now."""
        return self._pattern

    @property
    def brightness(self) -> float:
        """Top LED brightness 0..1, as configured or as a parent set it."""
        return self._brightness

    def set_brightness(self, brightness: float) -> None:
        """A parent dims the light (settings.put); the pattern shown is redrawn at once."""
        brightness = min(max(brightness, 0.0), 1.0)
        if brightness == self._brightness:
            return
        self._brightness = brightness
        pattern, self._pattern = self._pattern, Light.OFF
        self.led(Light.OFF)
        self.led(pattern)

    def led(self, pattern: Light) -> None:
        """Show `pattern`; setting the pattern already shown leaves it running undisturbed."""
        brightness = self._brightness
        with self._led_lock:
            if self._closed or pattern == self._pattern:
                return
            self._led.source = None  # stops the running pattern's thread
            match pattern:
                case Light.OFF:
                    self._led.off()
                case Light.PLAYING:
                    self._led.value = brightness
                case Light.READY:
                    self._led.source_delay = 1 / BREATH_FPS
                    self._led.source = _breathing(brightness)
                case Light.NEW_STORY | Light.ERROR:
                    # gpiozero's blink() always lights at full duty; a source can be dimmed.
                    self._led.source_delay = 0.5 / BLINK_HZ[pattern]
                    self._led.source = cycle([brightness, 0.0])
            self._pattern = pattern

    # -- lifetime --

    def close(self) -> None:
        """Stop timers and patterns and free the pins; safe to call twice."""
        with self._lock, self._led_lock:
            self._closed = True
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()

    def __enter__(self) -> Controls:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
