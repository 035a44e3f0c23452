"""The speaker's player: story audio out through PortAudio, never louder than allowed, never a click.

A pure core (`Mixer`: ring buffer, volume, fades, chime) is driven by an output backend that
calls `Mixer.fill` for every block: `SoundDeviceOutput` from the PortAudio callback, or
`WavFileOutput`, an in-process fake that writes a WAV. A feeder thread pulls chunks from the
source (which may block while speech is synthesized) so the audio callback never waits on
synthesis, and a player thread runs the caller's callbacks so they never run in the audio callback.
"""

from .config import ALSA_RAW_FORMAT, PACE_ENV, SAMPLE_RATE, AudioConfig
from .mixer import Mixer, RingBuffer, State, make_chime
from .outputs import Output, SoundDeviceOutput, WavFileOutput, alsa_file_config, import_sounddevice, read_alsa_raw
from .player import Player

__all__ = [
    "ALSA_RAW_FORMAT",
    "PACE_ENV",
    "SAMPLE_RATE",
    "AudioConfig",
    "Mixer",
    "Output",
    "Player",
    "RingBuffer",
    "SoundDeviceOutput",
    "State",
    "WavFileOutput",
    "alsa_file_config",
    "import_sounddevice",
    "make_chime",
    "read_alsa_raw",
]
