"""The player: story audio out through PortAudio, never louder than allowed, never a click.

A pure core (`Mixer`: ring buffer, volume, fades, chime) is driven by an output backend that
calls `Mixer.fill` for every block: `SoundDeviceOutput` from the PortAudio callback, or
`WavFileOutput`, an in-process fake that writes a WAV. A feeder thread pulls chunks from the
source (which may block while speech is synthesized) so the audio callback never waits on
synthesis, and a player thread runs the caller's callbacks so they never run in the audio callback.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AudioError
from .config import SAMPLE_RATE, AudioConfig
from .mixer import Mixer, State, make_chime
from .outputs import Output, SoundDeviceOutput

log = logging.getLogger(__name__)


def _as_mono(chunk: np.ndarray) -> np.ndarray:
    data = np.asarray(chunk, dtype=np.float32)
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 1:
        raise AudioError(f"audio chunk of shape {data.shape!r} is not mono; expected (frames,) or (frames, 1)")
    return np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)


@dataclass(frozen=True)
class _Session:
    on_finished: Callable[[bool], None] | None
    on_progress: Callable[[float], None] | None


class Player:
    """Plays one source at a time. Thread-safe; callbacks run on the player thread, errors in them are logged."""

    def __init__(self, config: AudioConfig | None = None, output: Output | None = None) -> None:
        self.config = config or AudioConfig()
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._mixer = Mixer(self.config, on_drained=lambda gen, ok: self._events.put(("drained", gen, ok)))
        self._lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._chime = make_chime()
        self._closed = False
        self.output = output if output is not None else SoundDeviceOutput(self.config)
        self.output.start(self._mixer)
        self._thread = threading.Thread(target=self._run, name="hml-player", daemon=True)
        self._thread.start()

    def play(
        self,
        chunks: Iterable[np.ndarray],
        on_finished: Callable[[bool], None] | None = None,
        on_progress: Callable[[float], None] | None = None,
        start_at: float = 0.0,
    ) -> None:
        """Fade out what plays (its on_finished(False)) and play `chunks`, skipping `start_at` seconds."""
        skip = max(0, round(start_at * SAMPLE_RATE))
        with self._lock:
            if self._closed:
                raise AudioError("the player is closed; make a new Player")
            old = self._mixer.generation
            gen, live = self._mixer.start(skip)
            self._sessions[gen] = _Session(on_finished, on_progress)
        if live:
            self._events.put(("finished", old, False))
        threading.Thread(target=self._feed, args=(gen, iter(chunks), skip), name="hml-feeder", daemon=True).start()

    def pause(self) -> bool:
        """Fade out and hold the position; False if nothing was playing. Never waits on the source."""
        return self._mixer.pause()

    def resume(self) -> bool:
        """Fade back in where it paused; False if nothing was paused."""
        return self._mixer.resume()

    def stop(self) -> None:
        """Fade out and drop the source; its on_finished(False) follows unless it had already played out."""
        with self._lock:
            gen = self._mixer.generation
            if self._mixer.stop():
                self._events.put(("finished", gen, False))

    def set_volume(self, volume: float) -> float:
        """Clamp to 0..max_volume and return the volume used."""
        return self._mixer.set_volume(volume)

    def chime(self) -> bool:
        """Mix in the new-story chime (unless the config turns it off); True if it plays."""
        if not self.config.chime:
            return False
        self._mixer.chime(self._chime)
        return True

    @property
    def position(self) -> float:
        """Seconds of the current source played, counted from its beginning (start_at included)."""
        return self._mixer.position_frames / SAMPLE_RATE

    @property
    def is_playing(self) -> bool:
        """A source is playing (not paused, not played out)."""
        return self._mixer.state is State.PLAYING

    @property
    def is_paused(self) -> bool:
        """A source is paused."""
        return self._mixer.state is State.PAUSED

    def close(self) -> None:
        """Stop, close the output and end the player's thread; safe to call twice. `play` after it
        raises AudioError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop()
        self.output.close()
        self._mixer.close()
        drained = self._mixer.take_drained()
        if drained is not None:
            self._events.put(("drained", *drained))
        self._events.put(("close",))
        self._thread.join(timeout=5)

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- threads -------------------------------------------------------------------

    def _feed(self, gen: int, chunks: Iterator[np.ndarray], skip: int) -> None:
        """Pull the source into the ring; may block on the source, never on the audio callback."""
        ok = True
        try:
            for chunk in chunks:
                data = _as_mono(chunk)
                cut = min(skip, len(data))
                skip -= cut
                if not self._mixer.write(gen, data[cut:]) or self._mixer.generation != gen:
                    return
        except Exception:  # noqa: BLE001 - a failing source ends the story, not the player
            log.exception("audio source failed; playing what arrived")
            ok = False
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.exception("closing the audio source failed")
        self._mixer.end(gen, ok)

    def _run(self) -> None:
        next_tick = time.monotonic() + 1.0
        while True:
            try:
                event = self._events.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                event = ("tick",)
            if event[0] == "close":
                return
            try:
                if event[0] == "drained":
                    time.sleep(self.output.latency)  # handed over is not heard yet
                if event[0] in ("drained", "finished"):
                    self._finish(event[1], event[2])
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + 1.0
                    self._progress()
            except Exception:  # noqa: BLE001 - keep serving callbacks
                log.exception("player thread: unexpected error")

    def _finish(self, gen: int, ok: bool) -> None:
        with self._lock:
            session = self._sessions.pop(gen, None)
        if session is not None and session.on_finished is not None:
            _call(session.on_finished, ok)

    def _progress(self) -> None:
        with self._lock:
            session = self._sessions.get(self._mixer.generation)
        if session is not None and session.on_progress is not None and self.is_playing:
            _call(session.on_progress, self.position)


def _call(callback: Callable[[Any], None], arg: object) -> None:
    try:
        callback(arg)
    except Exception:  # noqa: BLE001 - the caller's bug must not stop the player
        log.exception("player callback %r failed", callback)
