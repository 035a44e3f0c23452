"""Every error the speaker raises on purpose derives from `HearMyLoveError`.

Specific errors also subclass the builtin they resemble, so callers that only know
Python's own exceptions still catch them. Messages name the offending value and how
to fix it.
"""

from __future__ import annotations


class HearMyLoveError(Exception):
    """Root of the project's own errors."""


class ModelError(HearMyLoveError, RuntimeError):
    """The exported models are missing, corrupt or do not fit together."""


class TextError(HearMyLoveError, ValueError):
    """Story text that cannot be spoken: empty, too long, or nothing speakable in it."""


class LanguageError(HearMyLoveError, ValueError):
    """A language the engine does not speak."""


class VoiceError(HearMyLoveError, ValueError):
    """An unknown voice or a style vector of the wrong shape."""


class CacheError(HearMyLoveError, OSError):
    """A render-cache file that cannot be written or read back."""


class ConfigError(HearMyLoveError, ValueError):
    """The config file is missing, not TOML, or has a key with a bad value."""


class BrokerError(HearMyLoveError, ConnectionError):
    """The MQTT broker cannot be reached or started."""


class AudioError(HearMyLoveError, OSError):
    """The sound output cannot be opened or fed: PortAudio missing, no such device, player closed."""


class VoicePackError(HearMyLoveError, ValueError):
    """A voice pack that is unsigned, tampered with, for another base model, or unsafe to unpack."""


class RecordingError(HearMyLoveError, ValueError):
    """Enrollment recordings the studio cannot clone from: unreadable, too short, clipped, noisy, mixed voices."""
