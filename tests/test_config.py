"""The daemon's config file: valid files load, invalid ones name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearmylove import config
from hearmylove.errors import ConfigError

pytestmark = pytest.mark.fast

EXAMPLE = Path(__file__).resolve().parents[1] / "provisioning" / "config.example.toml"


def test_the_shipped_example_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('ca_file = "/etc/hearmylove/ca.crt"', f'ca_file = "{tmp_path / "ca.crt"}"')
    (tmp_path / "ca.crt").write_text("not checked here")
    (tmp_path / "c.toml").write_text(text)
    loaded = config.load(tmp_path / "c.toml")
    assert loaded.device_id == "kid-001" and loaded.mqtt.port == 8883 and loaded.controls.led_pin == 18
    assert loaded.story.quiet_hours is not None and str(loaded.story.quiet_hours.start) == "20:30:00"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('device_id = "kid"\n[mqtt]\nport = "eighty"', "mqtt.port: Input should be a valid integer"),
        ('device_id = "kid"\n[audio]\nmax_volume = 3', "audio.max_volume"),
        ('device_id = "kid"\ncolour = "red"', "colour: Extra inputs are not permitted"),
        ("[mqtt]\nport = 1883", "device_id: Field required"),
        ('device_id = "kid 1"', "device_id: String should match pattern"),
        ('device_id = "kid"\n[mqtt]\nca_file = "/nope/ca.crt"', "ca_file '/nope/ca.crt' does not exist"),
        ('device_id = "kid"\n[controls]\nled_pin = 17', "GPIO 17"),
        ('device_id = "kid"\n[story]\nquiet_hours = { start = "25:00", end = "07:00" }', "story.quiet_hours.start"),
        ("device_id = ", "not valid TOML"),
    ],
)
def test_invalid_files_name_the_key_and_the_file(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('device_id = "kid"\n[mqtt]\nhost = "from-file"\nport = 1883\n')
    monkeypatch.setenv("HML_MQTT__HOST", "from-env")
    loaded = config.load(path)
    assert loaded.mqtt.host == "from-env" and loaded.mqtt.port == 1883
