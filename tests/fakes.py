"""Recording fakes for the controller's ports: the test drives them step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from hearmylove import protocol as p
from hearmylove.errors import TextError
from hearmylove.library import Story


@dataclass
class FakePlayer:
    calls: list[str] = field(default_factory=list)
    volume: float = 0.5
    position: float = 0.0
    source: Iterator[np.ndarray] | None = None
    on_finished: Callable[[bool], None] | None = None
    on_progress: Callable[[float], None] | None = None
    start_at: float = 0.0

    def play(self, chunks: Iterable[np.ndarray], on_finished=None, on_progress=None, start_at: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        self.calls.append("play")
        self.source, self.on_finished, self.on_progress, self.start_at = (
            iter(chunks),
            on_finished,
            on_progress,
            start_at,
        )
        self.position = start_at

    def pump(self) -> int:
        """Pull every chunk, as the audio thread would, then report the end."""
        assert self.source is not None and self.on_finished is not None
        n = sum(1 for _ in self.source)
        self.on_finished(True)
        return n

    def pull_one(self) -> None:
        assert self.source is not None
        next(self.source)

    def pause(self) -> bool:
        self.calls.append("pause")
        return True

    def resume(self) -> bool:
        self.calls.append("resume")
        return True

    def stop(self) -> None:
        self.calls.append("stop")
        if self.on_finished:
            self.on_finished(False)

    def set_volume(self, volume: float) -> float:
        self.volume = volume
        return volume

    def chime(self) -> bool:
        self.calls.append("chime")
        return True


class FakeRenderer:
    """A second of tone per story; 'BROKEN' in a story's text makes synthesis fail."""

    def __init__(self) -> None:
        self.prerendered: list[str] = []
        self.cancelled: list[str] = []

    def check(self, text: str, lang: str) -> None:
        if not text.strip():
            raise TextError("story text is empty")

    def prerender(self, story: Story) -> None:
        self.prerendered.append(story.id)

    def cancel(self, story_id: str) -> None:
        self.cancelled.append(story_id)

    def source(self, story: Story) -> Iterator[np.ndarray]:
        for _ in range(4):
            if "BROKEN" in story.text:
                raise RuntimeError("vocoder exploded")
            yield np.full(6000, 0.1, np.float32)

    def duration(self, story: Story) -> float | None:
        return 1.0

    def is_ready(self, story: Story) -> bool:
        return story.id in self.prerendered


@dataclass
class RecordingPublisher:
    events: list[p.Event] = field(default_factory=list)
    states: list[p.DeviceState] = field(default_factory=list)

    def event(self, event: p.Event) -> None:
        self.events.append(event)

    def state(self, state: p.DeviceState) -> None:
        self.states.append(state)

    def names(self) -> list[str]:
        return [e.NAME for e in self.events]
