"""The ports of the controller: what it needs from the player, the renderer and the link to
the parents, as Protocols.

The real adapters (`audio.Player`, `renderer.Renderer`, `mqtt.MqttLink`) satisfy them, and
so do the fakes in `tests/fakes.py`; the controller never imports an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np

from . import protocol as p
from .library import Story


class PlayerPort(Protocol):
    """Plays one story at a time, with a chime on top; never blocks the caller."""

    def play(
        self,
        chunks: Iterable[np.ndarray],
        on_finished: Callable[[bool], None] | None = None,
        on_progress: Callable[[float], None] | None = None,
        start_at: float = 0.0,
    ) -> None:
        """Start telling `chunks` (24 kHz mono float32) from `start_at` seconds, replacing
        what plays. `on_finished(True)` once the last sample was heard, `(False)` if stopped
        or the source failed; `on_progress(seconds)` about once a second. Both are called
        from the player's thread."""
        ...

    def pause(self) -> bool:
        """Fade out and hold the position; False if nothing was playing."""
        ...

    def resume(self) -> bool:
        """Fade back in where it paused; False if nothing was paused."""
        ...

    def stop(self) -> None:
        """Fade out and drop the story (its `on_finished(False)` follows)."""
        ...

    def set_volume(self, volume: float) -> float:
        """Set the volume, clamped to the player's limit; returns what was set."""
        ...

    def chime(self) -> bool:
        """Play the new-story chime over whatever plays; False if chimes are off."""
        ...

    @property
    def position(self) -> float:
        """Seconds of the current story played, counted from its beginning."""
        ...


class RendererPort(Protocol):
    """Turns stories into audio: ahead of time into the cache, or live while it plays."""

    def prerender(self, story: Story) -> None:
        """Queue `story` for rendering into the cache in the background (news: `Rendered`)."""
        ...

    def cancel(self, story_id: str) -> None:
        """Stop rendering that story, if it is queued or running."""
        ...

    def source(self, story: Story) -> Iterator[np.ndarray]:
        """The story's audio: from the cache when rendered, else synthesized as it plays."""
        ...

    def duration(self, story: Story) -> float | None:
        """Seconds of audio once rendered; None before."""
        ...

    def is_ready(self, story: Story) -> bool:
        """Whether the story's audio is in the cache."""
        ...

    def check(self, text: str, lang: str) -> None:
        """Raise a HearMyLoveError naming the problem if the text cannot be told."""
        ...


class Publisher(Protocol):
    """The controller's voice to the parents (the MQTT link, or a recorder in tests)."""

    def event(self, event: p.Event) -> None:
        """Publish an event (`event/<name>`)."""
        ...

    def state(self, state: p.DeviceState) -> None:
        """Publish the device state (retained)."""
        ...
