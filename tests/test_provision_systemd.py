"""The first-boot unit: valid for systemd, ordered before the network and the daemon, runs at most once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .test_systemd import analyze, verify

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "hearmylove-firstboot.service"


def test_the_first_boot_unit_verifies(tmp_path: Path) -> None:
    result = verify(UNIT, "provision", tmp_path)
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr


def test_it_runs_once_before_the_network_and_the_daemon() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=oneshot",
        "ConditionPathExists=/boot/firmware/hearmylove/identity.toml",
        "ConditionPathExists=!/etc/hearmylove/provisioned",
        "PrivateNetwork=yes",
    ):
        assert line in text, line
    before = " ".join(re.findall(r"^Before=(.*)$", text, re.M))
    for unit in ("hearmylove.service", "systemd-networkd.service", "wpa_supplicant@wlan0.service"):
        assert unit in before, unit


def test_its_exposure_score_stays_low() -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for hearmylove-firstboot.service: ([\d.]+)", result.stdout)
    assert found is not None, result.stdout[-2000:]
    assert float(found.group(1)) <= 2.0, result.stdout[-2000:]
