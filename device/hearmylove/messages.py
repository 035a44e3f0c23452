"""What flows into the controller besides commands: the child's buttons, what the LED should
show, and the news that adapters on other threads post to the daemon's queue.

Plain values with no behaviour, so that adapters (GPIO, audio, renderer) and the core
share one vocabulary without importing each other. The controller matches on these types
in `Controller.dispatch`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Button(enum.Enum):
    """What the child asked for (the GPIO adapter turns presses into these)."""

    PLAY_PAUSE = "play_pause"
    """Single press of the big button."""
    NEXT = "next"
    """Big button held for `hold_seconds`."""
    REPEAT = "repeat"
    """Two presses of the big button within `double_press_seconds`."""
    HEART = "heart"
    """Heart button pressed."""


class Light(enum.Enum):
    """What the LED tells the child."""

    OFF = "off"
    READY = "ready"
    """Slow breathing: waiting for a press."""
    PLAYING = "playing"
    """Solid on."""
    NEW_STORY = "new_story"
    """Blinking about once a second: a parent sent a story."""
    ERROR = "error"
    """Fast blink, about 5 Hz."""


# -- inputs posted from other threads -----------------------------------------------
# `token` names one telling of a story: news carrying an older token is stale and ignored.


@dataclass(frozen=True)
class AudioStarted:
    """The first audio of telling `token` reached the player."""

    token: int


@dataclass(frozen=True)
class PlaybackEnded:
    """The player finished telling `token`: `completed` if the last sample was heard."""

    token: int
    completed: bool


@dataclass(frozen=True)
class Progress:
    """Seconds of telling `token` heard so far (about once a second)."""

    token: int
    position: float


@dataclass(frozen=True)
class SourceFailed:
    """Synthesis of telling `token` failed; `message` says why."""

    token: int
    message: str


@dataclass(frozen=True)
class Rendered:
    """A story was rendered into the cache ahead of time: `duration` seconds of audio."""

    story_id: str
    duration: float


@dataclass(frozen=True)
class RenderFailed:
    """Rendering a story ahead of time failed; `message` says why."""

    story_id: str
    message: str


@dataclass(frozen=True)
class Pressed:
    """The child pressed a button."""

    button: Button


@dataclass(frozen=True)
class VoicesChanged:
    """A pack was installed or rolled back, or the active voice chosen: publish the state."""
