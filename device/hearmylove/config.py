"""The daemon's configuration: one TOML file, validated once at start-up.

`/etc/hearmylove/config.toml` on the Pi, any path in development. Environment variables
override it (`HML_MQTT__HOST=...`, nested keys joined by `__`). An invalid file stops the
daemon with a message that names the file, the key and the problem: a half-started
speaker is worse than one that says what is wrong.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .audio import AudioConfig
from .controls import ControlsConfig
from .engine.config import EngineConfig
from .errors import ConfigError
from .paths import data_dir
from .protocol import QuietHours

DEFAULT_PATH = Path("/etc/hearmylove/config.toml")


class MqttConfig(BaseModel):
    """`[mqtt]`: how the speaker reaches its broker. Files named here must exist."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = True
    """TLS to the broker; off only for a broker on this machine."""
    ca_file: Path | None = None
    """CA that signed the broker's certificate (None: the system's CAs)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    session_expiry: int = Field(7 * 24 * 3600, ge=0)
    """Seconds the broker keeps the speaker's session (and queued commands) while it is away."""
    reconnect_max_seconds: int = Field(60, ge=1, le=3600)

    @model_validator(mode="after")
    def _files_exist(self) -> MqttConfig:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {str(path)!r} does not exist or is not a file")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self


class StoryConfig(BaseModel):
    """`[story]`: the installer's limits on stories; parents' settings stay inside them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_story_chars: int = Field(50_000, ge=100, le=200_000)
    """Longest story text accepted (about 50 minutes of speech at the default)."""
    max_payload_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest command accepted (a long Mandarin story, or a voice pack, fits)."""
    quiet_hours: QuietHours | None = None
    """Default quiet hours (a parent may change them); e.g. {start = "20:30", end = "07:00"}."""
    sleep_timer_minutes: int = Field(0, ge=0, le=240)
    progress_interval: float = Field(10.0, ge=1.0)
    """Seconds between `story.progress` events."""


class DaemonConfig(BaseSettings):
    """The whole config file, validated and frozen; `HML_...` environment variables override it.

    Build it with `load` (which names the file in its errors); constructing it directly
    raises pydantic's ValidationError.
    """

    model_config = SettingsConfigDict(env_prefix="HML_", env_nested_delimiter="__", extra="forbid", frozen=True)

    device_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """This speaker's id: its topics are hml/v1/<device_id>/..."""
    state_dir: Path = Field(default_factory=data_dir)
    """SQLite library and render cache (StateDirectory on the Pi)."""
    mqtt: MqttConfig = MqttConfig()
    audio: AudioConfig = AudioConfig()
    controls: ControlsConfig = ControlsConfig()
    engine: EngineConfig = EngineConfig()
    story: StoryConfig = StoryConfig()
    trusted_keys: list[str] = Field(default_factory=list)
    """Studio public keys (PEM or base64 ed25519) whose voice packs this speaker accepts."""
    simulate_pins: bool = False
    """Use gpiozero's MockFactory instead of real GPIO (development, demo)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment overrides the file (passed as init values by `load`); no .env files or secrets dirs."""
        return env_settings, init_settings


def load(path: Path, **overrides: Any) -> DaemonConfig:
    """Read, validate and freeze the config, or raise ConfigError naming what is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    data.update(overrides)
    try:
        return DaemonConfig(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()[:8]
        )
        raise ConfigError(f"config file {str(path)!r} is invalid: {problems}") from None
