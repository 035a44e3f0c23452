"""Dependencies point one way, checked on sys.modules in a fresh interpreter.

The core (controller, library, protocol) knows nothing of the edges' libraries; the daemon
loads verified graphs and never the graph-building `onnx` or the studio's torch; reading the
config opens no GPIO code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

EDGES = ("paho", "gpiozero", "sounddevice", "onnxruntime")
BUILDING = ("onnx", "torch")


def loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """The watched top-level packages that `code` leaves in sys.modules of a new interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [name for name in json.loads(result.stdout.strip().splitlines()[-1]) if name in watched]


def test_the_core_loads_none_of_the_edges_libraries() -> None:
    core = "import " + ", ".join(f"hearmylove.{m}" for m in ("controller", "ports", "messages", "library", "protocol"))
    assert loaded_after(core, EDGES) == []


def test_the_speaker_side_never_imports_graph_building_or_torch() -> None:
    """The daemon and the engine load verified graphs; `onnx` (building) and torch stay off the speaker."""
    speaker = "import hearmylove.daemon, hearmylove.cli, hearmylove.engine.engine, hearmylove.voicepack"
    assert loaded_after(speaker, BUILDING) == []


def test_reading_the_config_opens_no_gpio_code(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('device_id = "kid-001"\n[controls]\nbig_button_pin = 5\n')
    read = f"from hearmylove.config import load\nassert load({str(config)!r}).controls.big_button_pin == 5"
    assert loaded_after(read, ("gpiozero",)) == []


def test_the_probe_sees_what_is_loaded() -> None:
    """The checks above can fail: a library that is imported shows up."""
    assert loaded_after("import gpiozero.pins.mock", ("gpiozero", "torch")) == ["gpiozero"]
