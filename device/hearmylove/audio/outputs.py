"""Where the mixed audio goes: PortAudio (the real one), or a WAV file (the in-process fake),
and the ALSA file device that lets PortAudio play on a machine with no sound card."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .config import ALSA_RAW_FORMAT, PACE_ENV, SAMPLE_RATE, AudioConfig
from .mixer import Mixer

log = logging.getLogger(__name__)


class Output(Protocol):
    """Where the mixed audio goes: calls `mixer.fill` for every block, from its own thread."""

    @property
    def latency(self) -> float:
        """Seconds between `fill` and the sound leaving the speaker."""
        ...

    def start(self, mixer: Mixer) -> None:
        """Begin pulling blocks from `mixer`. Raises AudioError when the output cannot open."""
        ...

    def close(self) -> None:
        """Stop pulling and release the device; safe to call twice."""
        ...


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
        """PortAudio's output latency in seconds (0 before `start`)."""
        stream = self._stream  # close() may run meanwhile
        return float(stream.latency) if stream is not None else 0.0

    def _hold_back(self, frames: int) -> None:
        now = time.monotonic()
        self._clock = max(self._clock or now, now - 0.2) + frames / SAMPLE_RATE  # no long catch-up bursts
        if self._clock - now > 0.05:
            time.sleep(self._clock - now - 0.05)

    def start(self, mixer: Mixer) -> None:
        """Open and start the stream. Raises AudioError naming the device (and how to list them)
        when it cannot open, or naming the package when PortAudio is missing."""
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
        """Close the stream; an error the callback swallowed (it plays silence instead) is logged now."""
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
        """Create the WAV file and start mixing into it."""
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
        """Stop mixing and finish the WAV file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._file is not None:
            self._file.close()


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
