"""A speaker's identity: who it is, which Wi-Fi, which broker, which family voice.

One TOML file per device, written by the installer. It is validated completely (the CA
parses, the timezone exists, the passphrase fits WPA2, the daemon settings it carries are
valid for `DaemonConfig`) before anything is written to a card, so a typo is caught at
the installer's desk rather than on a speaker that never comes online. The same model
reads the bundle on the card at first boot: file paths are relative to the identity file.
"""

from __future__ import annotations

import tarfile
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hearmylove.config import DaemonConfig
from hearmylove.errors import VoicePackError
from hearmylove.voicepack import load_public_key

from . import tomlout
from .errors import IdentityError

ETC = Path("/etc/hearmylove")
STATE = Path("/var/lib/hearmylove")
BUNDLE_NAMES = {"ca": "ca.crt", "client_cert": "client.crt", "client_key": "client.key", "voice_pack": "voicepack.tar"}
"""File name of each embedded file inside the bundle folder on the FAT partition."""
_RESERVED = {"device_id", "trusted_keys", "state_dir"}


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the identity file's folder (given as validation context)."""
    base = (info.context or {}).get("base")
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


class Wifi(BaseModel):
    """The home network the speaker joins (WPA2-Personal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ssid: str = Field(min_length=1)
    """Network name, up to 32 bytes."""
    passphrase: str
    """WPA2 passphrase: 8 to 63 printable ASCII characters. Stored on the speaker only as the derived PSK."""
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    """Regulatory domain (ISO 3166 code such as GB, DE, CN); needed for 5 GHz channels."""

    @field_validator("ssid")
    @classmethod
    def _ssid_fits(cls, ssid: str) -> str:
        if len(ssid.encode()) > 32:
            raise ValueError(f"SSID {ssid!r} is {len(ssid.encode())} bytes; Wi-Fi allows at most 32")
        if any(ord(ch) < 0x20 for ch in ssid):
            raise ValueError(f"SSID {ssid!r} holds a control character")
        return ssid

    @field_validator("passphrase")
    @classmethod
    def _wpa2(cls, passphrase: str) -> str:
        if not 8 <= len(passphrase) <= 63:
            raise ValueError(f"a WPA2 passphrase has 8 to 63 characters; this one has {len(passphrase)}")
        if not all(0x20 <= ord(ch) <= 0x7E for ch in passphrase):
            raise ValueError("a WPA2 passphrase holds only printable ASCII characters (no accents, no tabs)")
        return passphrase


class Broker(BaseModel):
    """The family broker: where the speaker connects, how it proves who it is, and whom it trusts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str
    """mqtts://host:port (TLS is required: the speaker crosses the internet)."""
    ca: Path
    """PEM file of the CA that signed the broker's certificate."""
    username: str | None = None
    password: str | None = None
    client_cert: Path | None = None
    """PEM client certificate, instead of (or with) a username and password."""
    client_key: Path | None = None

    @field_validator("url")
    @classmethod
    def _mqtts(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "mqtts":
            raise ValueError(f"{url!r} must start with mqtts:// (the speaker only talks TLS to its broker)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port; write mqtts://host:8883") from None
        if not parts.hostname or port is None:
            raise ValueError(f"{url!r} must name a host and a port, e.g. mqtts://broker.example.org:8883")
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise ValueError(f"{url!r} must be only mqtts://host:port; put credentials in username/password")
        return url

    @field_validator("ca", "client_cert", "client_key", mode="before")
    @classmethod
    def _relative(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve(Path(value), info) if isinstance(value, str | Path) else value

    @field_validator("ca")
    @classmethod
    def _ca_parses(cls, path: Path) -> Path:
        try:
            certs = x509.load_pem_x509_certificates(_read(path))
        except ValueError as exc:
            raise ValueError(f"{str(path)!r} is not a PEM certificate ({exc})") from None
        if not certs:
            raise ValueError(f"{str(path)!r} holds no certificate")
        return path

    @model_validator(mode="after")
    def _credentials(self) -> Broker:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: give both or neither")
        if self.username is None and self.client_cert is None:
            raise ValueError("no credentials: give username and password, or client_cert and client_key")
        if self.client_cert is not None and self.client_key is not None:
            try:
                x509.load_pem_x509_certificate(_read(self.client_cert))
            except ValueError as exc:
                raise ValueError(f"client_cert {str(self.client_cert)!r} is not a PEM certificate ({exc})") from None
            try:
                load_pem_private_key(_read(self.client_key), password=None)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"client_key {str(self.client_key)!r} is not an unencrypted PEM private key ({exc})"
                ) from None
        return self

    @property
    def host(self) -> str:
        return str(urlsplit(self.url).hostname)

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 8883)


class Identity(BaseModel):
    """Everything that makes one speaker this family's speaker."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    device_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """The speaker's id and its broker username by convention: topics hml/v1/<device_id>/..."""
    timezone: str
    """IANA zone (Europe/London, Asia/Shanghai): quiet hours and scheduled tells follow it."""
    wifi: Wifi
    broker: Broker
    trusted_keys: list[str] = Field(default_factory=list)
    """Studio public keys (`voicelab keygen` prints one) whose voice packs the speaker accepts."""
    voice_pack: Path | None = None
    """The family's signed voice pack (.tar from `voicelab pack`), installed at first boot."""
    sound: Literal["card", "none"] = "card"
    """"none" for a speaker with no sound card (qemu, a bench test): plays into ALSA's null device."""
    daemon: dict[str, Any] = Field(default_factory=dict)
    """More `config.toml` keys for the daemon (audio, controls, engine, story, simulate_pins)."""

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, zone: str) -> str:
        if zone not in zoneinfo.available_timezones():
            raise ValueError(f"unknown timezone {zone!r}; use an IANA name such as Europe/London or Asia/Shanghai")
        return zone

    @field_validator("trusted_keys")
    @classmethod
    def _keys_parse(cls, keys: list[str]) -> list[str]:
        for i, key in enumerate(keys):
            try:
                load_public_key(key)
            except VoicePackError as exc:
                raise ValueError(f"trusted key #{i + 1}: {exc}") from None
        return keys

    @field_validator("voice_pack", mode="before")
    @classmethod
    def _relative(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve(Path(value), info) if isinstance(value, str | Path) else value

    @field_validator("voice_pack")
    @classmethod
    def _is_tar(cls, path: Path | None) -> Path | None:
        if path is not None and (not path.is_file() or not tarfile.is_tarfile(path)):
            raise ValueError(f"{str(path)!r} is not a voice pack .tar (make one with: voicelab pack ... --out X.tar)")
        return path

    @field_validator("daemon")
    @classmethod
    def _not_reserved(cls, extra: dict[str, Any]) -> dict[str, Any]:
        if clash := sorted(_RESERVED & set(extra)):
            raise ValueError(f"{clash} come from the identity itself; remove them from [daemon]")
        try:
            DaemonConfig(**{**extra, "device_id": "check"})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
        return extra

    @model_validator(mode="after")
    def _daemon_config_valid(self) -> Identity:
        if self.voice_pack is not None and not self.trusted_keys:
            raise ValueError("voice_pack needs trusted_keys: add the studio's public key that signed the pack")
        try:
            DaemonConfig(**daemon_config(self, etc=None))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(
                f"the daemon config made from this identity is invalid at {where}: {first['msg']}"
            ) from None
        return self


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def daemon_config(identity: Identity, etc: Path | None = ETC, state_dir: Path = STATE) -> dict[str, Any]:
    """The daemon's config.toml as a dict; `etc=None` keeps the identity's own file paths (for checking)."""
    broker = identity.broker
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "tls": True}
    mqtt["ca_file"] = str(broker.ca if etc is None else etc / BUNDLE_NAMES["ca"])
    if broker.username is not None:
        mqtt["username"], mqtt["password"] = broker.username, broker.password
    if broker.client_cert is not None and broker.client_key is not None:
        mqtt["cert_file"] = str(broker.client_cert if etc is None else etc / BUNDLE_NAMES["client_cert"])
        mqtt["key_file"] = str(broker.client_key if etc is None else etc / BUNDLE_NAMES["client_key"])
    own = {"device_id": identity.device_id, "state_dir": str(state_dir), "trusted_keys": identity.trusted_keys}
    return _merge(identity.daemon, {**own, "mqtt": mqtt})


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()[:8]
    )


def load(path: Path) -> Identity:
    """Read and validate an identity file, or raise IdentityError naming the key and the problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise IdentityError(f"identity file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise IdentityError(f"identity file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise IdentityError(f"identity file {str(path)!r} is not valid TOML: {exc}") from None
    try:
        return Identity.model_validate(data, context={"base": path.resolve().parent})
    except ValidationError as exc:
        raise IdentityError(f"identity file {str(path)!r} is invalid: {_problems(exc)}") from None


def bundle(identity: Identity) -> dict[str, bytes]:
    """The files that go into the folder on the FAT partition: identity.toml plus the embedded files.

    In the bundled identity.toml every path is a plain name inside the folder, so first boot
    reads it with this same model.
    """
    data = identity.model_dump(mode="json", exclude_none=True)
    files: dict[str, bytes] = {}
    for field, name in BUNDLE_NAMES.items():
        owner = data["broker"] if field != "voice_pack" else data
        source = getattr(identity.broker if field != "voice_pack" else identity, field)
        if source is not None:
            files[name] = Path(source).read_bytes()
            owner[field] = name
    files["identity.toml"] = tomlout.dumps(data, header="Hear My Love identity, applied once at first boot").encode()
    return files


def write_to(image: Path, identity: Identity) -> list[str]:
    """Put the identity bundle on the FAT partition of an image file or a card; the names written."""
    from .fatfs import FatVolume

    files = bundle(identity)
    FatVolume(image).write_folder(files)
    return sorted(files)
