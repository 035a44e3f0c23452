"""The daemon's systemd unit: valid for systemd, and as locked down as audio and GPIO allow."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "hearmylove.service"


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return tool


def verify(unit_file: Path, program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify`, with ExecStart pointed at this venv's program so systemd can check it."""
    unit = tmp_path / unit_file.name
    here = Path(sys.executable).parent / program
    unit.write_text(unit_file.read_text().replace(f"/opt/hearmylove/venv/bin/{program}", str(here)))
    return subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_the_unit_verifies(tmp_path: Path) -> None:
    result = verify(UNIT, "hearmylove", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hearmylove.service" not in result.stderr, result.stderr


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "StateDirectory=hearmylove",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
    ):
        assert line in text
    assert int(re.search(r"WatchdogSec=(\d+)", text).group(1)) > 5  # type: ignore[union-attr]  # the loop pings every 5 s


def test_the_exposure_score_stays_low() -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    score = float(re.search(r"Overall exposure level for hearmylove.service: ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, result.stdout[-2000:]
