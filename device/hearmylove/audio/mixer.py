"""The pure core of the player: ring buffer, volume, fades and chime, filled block by block."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable

import numpy as np

from .config import _CHIME_LEVEL, SAMPLE_RATE, AudioConfig

log = logging.getLogger(__name__)


class State(enum.Enum):
    """The mixer's source: none (or played out), playing, or paused."""

    IDLE = "idle"
    PLAYING = "playing"
    PAUSED = "paused"


class RingBuffer:
    """Fixed-size float32 FIFO. Not locked itself: the Mixer's lock guards it."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self._read = 0
        self.available = 0

    @property
    def space(self) -> int:
        """Samples that can be written now."""
        return len(self._data) - self.available

    def write(self, samples: np.ndarray) -> int:
        """Append as many of `samples` as fit; returns how many."""
        cap = len(self._data)
        n = min(len(samples), self.space)
        start = (self._read + self.available) % cap
        first = min(n, cap - start)
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:n]
        self.available += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Move the oldest samples into the start of `out`, as many as it holds; returns how many."""
        cap = len(self._data)
        n = min(len(out), self.available)
        first = min(n, cap - self._read)
        out[:first] = self._data[self._read : self._read + first]
        out[first:n] = self._data[: n - first]
        self._read = (self._read + n) % cap
        self.available -= n
        return n

    def clear(self) -> None:
        """Drop everything buffered."""
        self._read = self.available = 0


def _ramp(start: float, target: float, n: int, step: float) -> np.ndarray:
    """n gains moving linearly from start toward target by at most `step` per sample."""
    if start == target:
        return np.full(n, start, np.float32)
    sign = 1.0 if target > start else -1.0
    values = start + sign * step * np.arange(1, n + 1, dtype=np.float64)
    clipped = np.minimum(values, target) if sign > 0 else np.maximum(values, target)
    return clipped.astype(np.float32)


def make_chime(seconds: float = 0.4) -> np.ndarray:
    """Two soft bell notes, E5 then B5 (a fifth up): 'a new story is here', peak 1.0."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    for start, freq in ((0.0, 659.25), (0.15, 987.77)):
        tt = np.maximum(t - start, 0.0)
        envelope = np.where(t >= start, np.minimum(tt / 0.005, 1.0) * np.exp(-tt / 0.09), 0.0)
        out += envelope * (np.sin(2 * np.pi * freq * tt) + 0.2 * np.sin(4 * np.pi * freq * tt))
    out[-480:] *= np.linspace(1.0, 0.0, 480)  # 20 ms to silence: no click at the end
    return (out / np.abs(out).max()).astype(np.float32)


class Mixer:
    """The pure core, what the output hears: no I/O, no threads of its own, no sounddevice.

    `fill` is the output callback. Stopping or pausing moves the next `fade_ms` of the source
    into a faded-out tail, so the state changes at once while the sound dies away smoothly;
    starting or resuming fades in. `on_drained(generation, ok)` is called (cheaply, from `fill`)
    on the block after a source's last sample went out, i.e. once that sample was handed over.
    """

    def __init__(self, config: AudioConfig, on_drained: Callable[[int, bool], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._ring = RingBuffer(max(1, int(config.buffer_seconds * SAMPLE_RATE)))
        self.max_volume = config.max_volume
        self._fade = max(1, config.fade_ms * SAMPLE_RATE // 1000)
        self._step = 1.0 / self._fade
        self._vol = self._vol_target = min(config.volume, config.max_volume)
        self._env = 0.0  # fade envelope of the source, 0..1
        self.state = State.IDLE  # these three are read without the lock: single attribute reads
        self.generation = 0
        self.position_frames = 0  # of the current source, from its beginning
        self._eof = False
        self._ok = True
        self._drained: tuple[int, bool] | None = None
        self._tail = np.zeros(0, np.float32)
        self._chime = np.zeros(0, np.float32)
        self._chime_pos = 0
        self._scratch = np.zeros(0, np.float32)
        self._on_drained = on_drained or (lambda gen, ok: None)
        self._closed = False

    # -- the output side -----------------------------------------------------------

    def fill(self, out: np.ndarray) -> int:
        """Write the next block into `out` (frames x 1 float32); return how many frames carry sound."""
        buf = out[:, 0] if out.ndim == 2 else out
        buf[:] = 0.0
        with self._cond:
            if self._drained is not None:
                self._on_drained(*self._drained)
                self._drained = None
            active = self._mix_tail(buf)
            if self.state is State.PLAYING:
                active = max(active, self._mix_source(buf))
            active = max(active, self._mix_chime(buf))
            self._cond.notify_all()
        np.clip(buf, -self.max_volume, self.max_volume, out=buf)
        return active

    def wait_ready(self, frames: int, timeout: float) -> bool:
        """Wait until a block of `frames` would carry sound or news: how a fast fake waits like a device."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ready(frames), timeout)

    def _ready(self, frames: int) -> bool:
        source = self.state is State.PLAYING and (self._eof or self._ring.available >= frames)
        return source or self._drained is not None or len(self._tail) > 0 or self._chime_pos < len(self._chime)

    def _mix_tail(self, buf: np.ndarray) -> int:
        n = min(len(buf), len(self._tail))
        buf[:n] += self._tail[:n]
        self._tail = self._tail[n:]
        return n

    def _mix_source(self, buf: np.ndarray) -> int:
        n = len(buf)
        if len(self._scratch) < n:
            self._scratch = np.zeros(n, np.float32)
        data = self._scratch[:n]
        remaining = self._ring.available
        k = self._ring.read_into(data)
        if self._eof and remaining < k + self._fade:  # the end of the source: fade it out too
            data[:k] *= np.minimum(1.0, (remaining - 1 - np.arange(k, dtype=np.float32)) / self._fade)
        self.position_frames += k
        underrun = k < n and not self._eof
        if underrun:  # fade out what is there; when data comes back it fades in
            env = np.linspace(self._env, 0.0, k + 1, dtype=np.float32)[1:]
        else:
            env = _ramp(self._env, 1.0, k, self._step)
        vol = _ramp(self._vol, self._vol_target, k, self._step)
        if k:
            buf[:k] += data[:k] * env * vol
            self._env, self._vol = float(env[-1]), float(vol[-1])
        if underrun:
            self._env = 0.0
        if self._eof and self._ring.available == 0:
            self.state, self._env = State.IDLE, 0.0
            self._drained = (self.generation, self._ok)
        return k

    def _mix_chime(self, buf: np.ndarray) -> int:
        piece = self._chime[self._chime_pos : self._chime_pos + len(buf)]
        buf[: len(piece)] += piece
        self._chime_pos += len(piece)
        return len(piece)

    # -- the control side ----------------------------------------------------------

    def _cut(self) -> None:
        """Fade the next few ms of the source out into the tail; the source stops here."""
        gain = self._env * self._vol
        if self.state is State.PLAYING and gain > 0.0:
            piece = np.zeros(min(self._fade, self._ring.available), np.float32)
            self.position_frames += self._ring.read_into(piece)
            piece *= np.linspace(gain, 0.0, len(piece) + 1, dtype=np.float32)[1:]
            tail = np.zeros(max(len(piece), len(self._tail)), np.float32)
            tail[: len(self._tail)] += self._tail
            tail[: len(piece)] += piece
            self._tail = tail
        self._env = 0.0

    def start(self, offset_frames: int = 0) -> tuple[int, bool]:
        """Fade out whatever plays and begin a new source; returns (its generation, old one was live)."""
        with self._cond:
            live = self.stop()
            self.generation += 1
            self._eof, self._ok, self.position_frames = False, True, offset_frames
            self.state = State.PLAYING
            return self.generation, live

    def stop(self) -> bool:
        """Fade out and drop the source; True if one was playing or paused (not yet drained)."""
        with self._cond:
            live = self.state is not State.IDLE
            self._cut()
            self._ring.clear()
            self.generation += 1  # its feeder sees it is stale and lets go of the source
            self.state = State.IDLE
            self._cond.notify_all()
            return live

    def pause(self) -> bool:
        """Fade the source out and hold it; False if nothing was playing."""
        with self._cond:
            if self.state is not State.PLAYING:
                return False
            self._cut()
            self.state = State.PAUSED
            return True

    def resume(self) -> bool:
        """Fade the paused source back in; False if nothing was paused."""
        with self._cond:
            if self.state is not State.PAUSED:
                return False
            self.state = State.PLAYING
            self._cond.notify_all()
            return True

    def set_volume(self, volume: float) -> float:
        """Clamp to 0..max_volume (NaN keeps the volume); the change ramps over fade_ms."""
        with self._cond:
            v = float(volume)
            v = self._vol_target if v != v else min(max(v, 0.0), self.max_volume)
            self._vol_target = v
            if self.state is not State.PLAYING:
                self._vol = v
            return v

    def chime(self, samples: np.ndarray) -> None:
        """Mix `samples` over whatever plays, at the current volume (restarts a chime already sounding)."""
        with self._cond:
            self._chime = samples * np.float32(_CHIME_LEVEL * self._vol_target)
            self._chime_pos = 0
            self._cond.notify_all()

    def write(self, gen: int, samples: np.ndarray) -> bool:
        """Feeder side: block until all samples are in the ring; False once `gen` is no longer current."""
        done = 0
        with self._cond:
            while done < len(samples):
                if gen != self.generation or self._closed:
                    return False
                done += self._ring.write(samples[done:])
                self._cond.notify_all()
                if done < len(samples):
                    self._cond.wait(0.1)
            return gen == self.generation

    def end(self, gen: int, ok: bool = True) -> None:
        """The source of `gen` is exhausted (ok=False: it failed); what is buffered still plays."""
        with self._cond:
            if gen == self.generation:
                self._eof, self._ok = True, ok
                self._cond.notify_all()

    def take_drained(self) -> tuple[int, bool] | None:
        """A drain not yet reported (the output stopped calling fill)."""
        with self._cond:
            drained, self._drained = self._drained, None
            return drained

    def close(self) -> None:
        """Let go of any feeder blocked in `write` (it returns False)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
