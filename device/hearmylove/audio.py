"""The speaker's player: story audio out through PortAudio, never louder than allowed, never a click.

A pure core (`Mixer`: ring buffer, volume, fades, chime) is driven by an output backend that
calls `Mixer.fill` for every block: `SoundDeviceOutput` from the PortAudio callback, or
`WavFileOutput`, an in-process fake that writes a WAV. A feeder thread pulls chunks from the
source (which may block while speech is synthesized) so the audio callback never waits on
synthesis, and a player thread runs the caller's callbacks so they never run in the audio callback.
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from .errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # the engine's rate; not imported from it so playing needs no onnxruntime
PACE_ENV = "HEARMYLOVE_AUDIO_PACE"
ALSA_RAW_FORMAT = "S16_LE"
"""Sample format of the file written by `alsa_file_config`'s PCM (mono, SAMPLE_RATE)."""
_CHIME_LEVEL = 0.5  # relative to the volume: noticeable over a story, not startling


class AudioConfig(BaseModel):
    """Player settings, validated once at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | None = None
    """PortAudio output device name (list them with `python -m sounddevice`); None for the default."""
    max_volume: float = Field(0.8, ge=0.0, le=1.0)
    """Ceiling on the gain: nothing (set_volume, the config, the chime) plays louder. Protects small ears."""
    volume: float = Field(0.5, ge=0.0, le=1.0)
    """Volume at start-up; clamped to max_volume."""
    fade_ms: int = Field(30, ge=1, le=1000)
    """Linear fades on pause, resume, stop, underrun, a source's end and volume changes: nothing clicks."""
    buffer_seconds: float = Field(2.0, ge=0.1, le=60.0)
    """Ring buffer between synthesis and the sound card: rides out a slow sentence."""
    latency: Literal["low", "high"] | Annotated[float, Field(gt=0.0, le=2.0)] = "high"
    """PortAudio output latency ("high" is safest on a busy Pi) or seconds."""
    chime: bool = True
    """Play a short two-note chime when a new story arrives."""


class State(enum.Enum):
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
        return len(self._data) - self.available

    def write(self, samples: np.ndarray) -> int:
        cap = len(self._data)
        n = min(len(samples), self.space)
        start = (self._read + self.available) % cap
        first = min(n, cap - start)
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:n]
        self.available += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        cap = len(self._data)
        n = min(len(out), self.available)
        first = min(n, cap - self._read)
        out[:first] = self._data[self._read : self._read + first]
        out[first:n] = self._data[: n - first]
        self._read = (self._read + n) % cap
        self.available -= n
        return n

    def clear(self) -> None:
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
        with self._cond:
            if self.state is not State.PLAYING:
                return False
            self._cut()
            self.state = State.PAUSED
            return True

    def resume(self) -> bool:
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
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Output(Protocol):
    """Where the mixed audio goes: calls `mixer.fill` for every block, from its own thread."""

    @property
    def latency(self) -> float: ...

    def start(self, mixer: Mixer) -> None: ...

    def close(self) -> None: ...


def import_sounddevice() -> Any:
    """sounddevice loads PortAudio when imported; name the fix when the library is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioError(f"PortAudio is missing ({exc}); install it with: apt-get install libportaudio2") from exc
    return sounddevice


class SoundDeviceOutput:
    """The real speaker: a PortAudio stream, open from start to close, whose callback mixes each block.

    pace=True (default: when $HEARMYLOVE_AUDIO_PACE is "1", as `alsa_file_config` asks) holds each
    callback back to real time, for ALSA sinks with no clock such as the CI file PCM, which would
    otherwise run ~1000x faster than real time and write ~45 MB of silence a second.
    """

    def __init__(self, config: AudioConfig | None = None, *, pace: bool | None = None) -> None:
        self.config = config or AudioConfig()
        self.pace = os.environ.get(PACE_ENV) == "1" if pace is None else pace
        self._stream: Any = None
        self._clock: float | None = None
        self.underflows = 0
        self.callback_error: BaseException | None = None

    @property
    def latency(self) -> float:
        stream = self._stream  # close() may run meanwhile
        return float(stream.latency) if stream is not None else 0.0

    def _hold_back(self, frames: int) -> None:
        now = time.monotonic()
        self._clock = max(self._clock or now, now - 0.2) + frames / SAMPLE_RATE  # no long catch-up bursts
        if self._clock - now > 0.05:
            time.sleep(self._clock - now - 0.05)

    def start(self, mixer: Mixer) -> None:
        sd = import_sounddevice()

        def callback(outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.output_underflow:
                self.underflows += 1
            try:
                if self.pace:
                    self._hold_back(frames)
                mixer.fill(outdata)
            except Exception as exc:  # noqa: BLE001 - never let the stream die; logged at close
                outdata.fill(0.0)
                self.callback_error = exc

        device = self.config.device
        try:
            self._stream = sd.OutputStream(
                samplerate=SAMPLE_RATE,
                channels=1,
                dtype="float32",
                callback=callback,
                device=device,
                latency=self.config.latency,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            name = device or "default"
            raise AudioError(f"cannot open audio output {name!r}: {exc}; list devices: python -m sounddevice") from exc

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self.callback_error is not None:
            log.error("audio callback failed (played silence instead): %r", self.callback_error)


class WavFileOutput:
    """In-process fake speaker: mixes blocks from its own thread into a 16-bit WAV.

    realtime=True paces blocks like a sound card and writes silence on underrun or pause;
    otherwise it runs as fast as data comes, waiting for data instead of writing silence.
    """

    def __init__(self, path: Path | str, realtime: bool = False, block: int = 1024) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.block = block
        self.frames_written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: sf.SoundFile | None = None

    latency = 0.0

    def start(self, mixer: Mixer) -> None:
        self._file = sf.SoundFile(self.path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16")
        self._thread = threading.Thread(target=self._run, args=(mixer, self._file), name="hml-wav-out", daemon=True)
        self._thread.start()

    def _run(self, mixer: Mixer, file: sf.SoundFile) -> None:
        out = np.zeros((self.block, 1), np.float32)
        began = time.monotonic()
        while not self._stop.is_set():
            if self.realtime:
                if self._stop.wait(max(0.0, began + self.frames_written / SAMPLE_RATE - time.monotonic())):
                    break
                mixer.fill(out)
                n = self.block
            elif mixer.wait_ready(self.block, 0.1):
                n = mixer.fill(out)
            else:
                continue
            if n:
                file.write(out[:n])
                self.frames_written += n

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._file is not None:
            self._file.close()


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
        return self._mixer.pause()

    def resume(self) -> bool:
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
        return self._mixer.state is State.PLAYING

    @property
    def is_paused(self) -> bool:
        return self._mixer.state is State.PAUSED

    def close(self) -> None:
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


def alsa_file_config(raw_path: Path, conf_path: Path) -> dict[str, str]:
    """Make ALSA's default device a file so the real PortAudio path runs with no sound card (CI).

    A `plug` in front of the `file` PCM converts what PortAudio sends to S16_LE mono at 24 kHz,
    so the file reads back with `read_alsa_raw`. Put the returned variables in the environment
    before `import sounddevice`: PortAudio reads the ALSA config when it is loaded. The `null`
    slave has no clock, so they also turn on SoundDeviceOutput's pacing: the file then runs in
    real time, silence included (idle time is silence, not missing).
    """
    for path in (raw_path, conf_path):
        if any(ch in str(path) for ch in '"\\%\n'):
            raise AudioError(f"path {str(path)!r} has a character ALSA config cannot hold; choose another")
    conf_path.write_text(
        "pcm.!default {\n"
        "    type plug\n"
        f'    slave {{ pcm "hml_file" format {ALSA_RAW_FORMAT} rate {SAMPLE_RATE} channels 1 }}\n'
        "}\n"
        "pcm.hml_file {\n"
        "    type file\n"
        '    slave.pcm "null"\n'
        f'    file "{raw_path}"\n'
        '    format "raw"\n'
        "}\n"
    )
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf_path}", PACE_ENV: "1"}


def read_alsa_raw(raw_path: Path) -> np.ndarray:
    """The file written through `alsa_file_config`, as float32 mono at SAMPLE_RATE."""
    return np.fromfile(raw_path, dtype="<i2").astype(np.float32) / 32768.0
