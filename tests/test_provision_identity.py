"""An identity is checked completely at the installer's desk: each mistake names its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hearmylove.config import DaemonConfig
from hearmylove_provision.errors import IdentityError
from hearmylove_provision.identity import bundle, daemon_config, load

from .provision_helpers import base_model_dir, identity_data, studio_key, voice_pack, write_identity

pytestmark = pytest.mark.fast

EXAMPLE = Path(__file__).resolve().parents[1] / "provisioning" / "identity.example.toml"


def refused(tmp_path: Path, **overrides: object) -> str:
    path = write_identity(tmp_path, identity_data(tmp_path, **overrides))
    with pytest.raises(IdentityError) as caught:
        load(path)
    return str(caught.value)


def test_a_valid_identity_loads_with_paths_relative_to_its_file(tmp_path: Path) -> None:
    identity = load(write_identity(tmp_path, identity_data(tmp_path)))
    assert identity.device_id == "kid-001"
    assert identity.broker.ca == tmp_path / "family-ca.crt"
    assert (identity.broker.host, identity.broker.port) == ("broker.example.org", 8883)


def test_the_example_identity_has_every_section() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert {"device_id", "timezone", "wifi", "broker", "trusted_keys"} <= set(data)


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        ({"device_id": None}, "device_id", "Field required"),
        ({"wifi": {"ssid": "Home"}}, "wifi.passphrase", "Field required"),
        ({"wifi": {"ssid": "Home", "passphrase": "short"}}, "wifi.passphrase", "8 to 63 characters; this one has 5"),
        ({"wifi": {"ssid": "Home", "passphrase": "x" * 64}}, "wifi.passphrase", "this one has 64"),
        ({"wifi": {"ssid": "Home", "passphrase": "pässwörd123"}}, "wifi.passphrase", "printable ASCII"),
        ({"wifi": {"ssid": "S" * 33, "passphrase": "long enough"}}, "wifi.ssid", "at most 32"),
        ({"device_id": 17}, "device_id", "valid string"),
        ({"wifi": "Home"}, "wifi", "valid dictionary"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown timezone 'Europe/Atlantis'"),
        ({"trusted_keys": ["not a key"]}, "trusted_keys", "trusted key #1"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"daemon": {"audio": {"max_volume": 3}}}, "daemon", "audio.max_volume"),
        ({"daemon": {"device_id": "other"}}, "daemon", "come from the identity itself"),
    ],
)
def test_a_mistake_is_named_by_its_key(tmp_path: Path, overrides: dict[str, object], key: str, problem: str) -> None:
    message = refused(tmp_path, **overrides)
    assert f"{key}:" in message and problem in message, message
    assert "kid.toml" in message


@pytest.mark.parametrize(
    ("broker", "problem"),
    [
        ({"url": "mqtt://b.example.org:1883"}, "must start with mqtts://"),
        ({"url": "mqtts://b.example.org"}, "must name a host and a port"),
        ({"url": "mqtts://b.example.org:99999"}, "invalid port"),
        ({"username": None}, "username and password go together"),
        ({"username": None, "password": None}, "no credentials"),
        ({"ca": "missing.crt"}, "cannot read"),
    ],
)
def test_broker_mistakes(tmp_path: Path, broker: dict[str, object], problem: str) -> None:
    data = identity_data(tmp_path)
    merged = {**data["broker"], **broker}  # type: ignore[dict-item]
    message = refused(tmp_path, broker={k: v for k, v in merged.items() if v is not None})
    assert "broker" in message and problem in message, message


def test_a_ca_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    data = identity_data(tmp_path)
    message = refused(tmp_path, broker={**data["broker"], "ca": "bad.crt"})  # type: ignore[dict-item]
    assert "broker.ca:" in message and "is not a PEM certificate" in message, message


def test_an_unreadable_ca_is_refused(tmp_path: Path) -> None:
    data = identity_data(tmp_path)
    (tmp_path / "folder.crt").mkdir()
    message = refused(tmp_path, broker={**data["broker"], "ca": "folder.crt"})  # type: ignore[dict-item]
    assert "broker.ca:" in message and "cannot read" in message, message


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "kid.toml").write_text("device_id = \n")
    with pytest.raises(IdentityError, match="not valid TOML"):
        load(tmp_path / "kid.toml")
    with pytest.raises(IdentityError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_a_voice_pack_needs_a_trusted_key(tmp_path: Path) -> None:
    key, _ = studio_key(tmp_path)
    pack = voice_pack(tmp_path, key, base_model_dir(tmp_path / "base"))
    message = refused(tmp_path, voice_pack=str(pack))
    assert "voice_pack needs trusted_keys" in message


def test_the_bundle_embeds_files_and_reloads_from_its_own_folder(tmp_path: Path) -> None:
    key, pub = studio_key(tmp_path)
    pack = voice_pack(tmp_path, key, base_model_dir(tmp_path / "base"))
    identity = load(write_identity(tmp_path, identity_data(tmp_path, voice_pack="mama.tar", trusted_keys=[pub])))
    files = bundle(identity)
    assert sorted(files) == ["ca.crt", "identity.toml", "voicepack.tar"]
    assert files["voicepack.tar"] == pack.read_bytes()
    on_card = tmp_path / "card"
    on_card.mkdir()
    for name, data in files.items():
        (on_card / name).write_bytes(data)
    again = load(on_card / "identity.toml")
    assert again.broker.ca == on_card / "ca.crt" and again.voice_pack == on_card / "voicepack.tar"
    assert again.model_dump(exclude={"broker", "voice_pack"}) == identity.model_dump(exclude={"broker", "voice_pack"})


def test_the_generated_daemon_config_is_what_the_daemon_reads(tmp_path: Path) -> None:
    data = identity_data(tmp_path, sound="none", daemon={"simulate_pins": True, "audio": {"max_volume": 0.6}})
    identity = load(write_identity(tmp_path, data))
    config = daemon_config(identity, etc=tmp_path)
    (tmp_path / "ca.crt").write_bytes(identity.broker.ca.read_bytes())
    parsed = DaemonConfig(**config)
    assert parsed.mqtt.host == "broker.example.org" and parsed.mqtt.tls and parsed.mqtt.username == "kid-001"
    assert parsed.simulate_pins and parsed.audio.max_volume == 0.6
    assert str(parsed.state_dir) == "/var/lib/hearmylove"
