"""Render stories ahead in the background so the button plays at once; stream the
ones asked for before their render is done (writing the cache as they play).

The queue lives in memory, so the library is the truth: at start the daemon asks for
every stored story without a finished render (`resume`), and a power cut mid-render
costs only the time to render again.

A story told live has the CPU: the background worker waits between chunks while a
live stream runs, so a Pi never renders two stories at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from .engine.cache import RenderCache, render_key
from .engine.engine import Engine
from .engine.voices import Voice
from .errors import HearMyLoveError
from .library import Story

log = logging.getLogger(__name__)

Ready = Callable[[str, float], None]
Failed = Callable[[str, str], None]


@dataclass(frozen=True)
class _Resume:
    """A job: look through the stored stories and queue the ones without a render."""

    stories: Callable[[], Iterable[Story]]


class Renderer:
    """Renders stories into the `cache` on a background thread, one at a time.

    `on_ready(story_id, seconds)` and `on_failed(story_id, message)` are called from that
    thread (the daemon posts them to its queue). `voice_of(story, lang)` picks the voice a
    story is told in; by default the engine's voice for the story's own voice id.
    """

    def __init__(
        self,
        engine: Engine,
        cache: RenderCache,
        on_ready: Ready,
        on_failed: Failed,
        voice_of: Callable[[Story, str], Voice] | None = None,
    ) -> None:
        self._engine = engine
        self._voice_of = voice_of or (lambda story, lang: engine.voice(story.voice, lang))
        self._cache = cache
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._jobs: queue.Queue[Story | _Resume | None] = queue.Queue()
        self._idle = threading.Event()  # cleared while a story streams to the listener
        self._idle.set()
        self._cancelled: set[str] = set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="hml-render", daemon=True)
        self._worker.start()

    def voice(self, story: Story) -> Voice:
        """The voice the story is told in. Raises VoiceError (unknown voice) or TextError (its text)."""
        return self._voice_of(story, self._language(story))

    def key(self, story: Story) -> str:
        """The cache key of the story's audio: its text, voice, language and vocoder."""
        return render_key(story.text, self.voice(story), story.lang, vocoder=self._engine.vocoder_name)

    def _language(self, story: Story) -> str:
        return self._engine.frontend.prepare(story.text, story.lang)[1]

    def check(self, text: str, lang: str) -> None:
        """Refuse a story now (with the frontend's message) rather than fail when told."""
        self._engine.frontend.prepare(text, lang)

    def is_ready(self, story: Story) -> bool:
        """Whether the story's audio is in the cache."""
        return self._cache.get(self.key(story)) is not None

    def duration(self, story: Story) -> float | None:
        """Seconds of the rendered audio; None before it is rendered."""
        path = self._cache.get(self.key(story))
        return None if path is None else float(sf.info(str(path)).duration)

    def prerender(self, story: Story) -> None:
        """Queue the story for rendering ahead (undoing an earlier `cancel`)."""
        with self._lock:
            self._cancelled.discard(story.id)
        self._jobs.put(story)

    def resume(self, stories: Callable[[], Iterable[Story]]) -> None:
        """Render ahead every stored story whose render is missing (after a restart or a power
        cut). `stories` is read on the worker, so start-up does not wait for the voices."""
        self._jobs.put(_Resume(stories))

    def cancel(self, story_id: str) -> None:
        """Stop rendering that story ahead: a render under way ends at its next chunk, its partial file removed."""
        with self._lock:
            self._cancelled.add(story_id)

    def source(self, story: Story) -> Iterator[np.ndarray]:
        """Audio for the listener: from the cache, or synthesized now and cached as it plays."""
        key = self.key(story)
        if self._cache.get(key) is not None:
            return self._cache.read(key)
        self.cancel(story.id)  # the live stream renders it; the worker must not do it twice
        return self._live_stream(story, key)

    def _live_stream(self, story: Story, key: str) -> Iterator[np.ndarray]:
        self._idle.clear()
        try:
            stream = self._engine.stream(story.text, self.voice(story), story.lang)
            yield from self._cache.write(key, stream)
        finally:
            self._idle.set()
        duration = self.duration(story)
        if duration is not None:
            self._on_ready(story.id, duration)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, _Resume):
                self._queue_missing(job)
                continue
            self._render_safely(job)

    def _queue_missing(self, job: _Resume) -> None:
        """Queue the stories without a render, unheard and newest first (told next, likely)."""
        try:
            stories = sorted(job.stories(), key=lambda s: (s.heard, -s.added_at))
        except Exception:  # noqa: BLE001 - the library closing under us must not stop the worker
            log.exception("could not list the stories to render ahead")
            return
        missing = [s for s in stories if not self._closing.is_set() and not self._ready_or_unknown(s)]
        if missing:
            log.info("resuming render-ahead: %d stored stories have no render", len(missing))
        for story in missing:
            self._jobs.put(story)

    def _ready_or_unknown(self, story: Story) -> bool:
        """True when rendered; a story whose key cannot be computed (its voice is gone) is
        left for the listener, whose request reports the problem."""
        try:
            return self.is_ready(story)
        except Exception as exc:  # noqa: BLE001 - one bad story must not stop the others
            log.warning("not rendering %s ahead: %s", story.id, exc)
            return True

    def _render_safely(self, story: Story) -> None:
        try:
            self._render(story)
        except HearMyLoveError as exc:
            self._on_failed(story.id, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad story must not stop the worker
            log.exception("rendering %s failed", story.id)
            self._on_failed(story.id, f"rendering failed: {exc}")

    def _render(self, story: Story) -> None:
        key = self.key(story)
        if self._cache.get(key) is not None:
            self._on_ready(story.id, self.duration(story) or 0.0)
            return
        stream = self._engine.stream(story.text, self.voice(story), story.lang)
        writer = self._cache.write(key, stream)
        try:
            for _ in writer:
                while not self._idle.wait(0.5):  # a live story has the CPU
                    if self._closing.is_set():
                        return
                with self._lock:
                    if story.id in self._cancelled or self._closing.is_set():
                        log.info("render of %s stopped before the end", story.id)
                        return
        finally:
            writer.close()
        self._on_ready(story.id, self.duration(story) or 0.0)

    def close(self) -> None:
        """Stop between two chunks (the partial file is removed) and end the worker."""
        self._closing.set()
        self._jobs.put(None)
        self._worker.join(timeout=30)
