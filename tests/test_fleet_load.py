"""The fleet load harness at a small count: every speaker connects over TLS with its own
account and persistent session, every command from the parents is answered, none is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "fleet_load.py"


def test_fifty_speakers_and_their_parents_lose_nothing() -> None:
    run = subprocess.run(
        [sys.executable, str(HARNESS), "--speakers", "50", "--parents", "5", "--procs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["connected"] == 50
    assert figures["commands"] == 100  # a story and a "tell it now" per speaker
    assert (figures["lost"], figures["unanswered"], figures["never_received"]) == (0, 0, 0)
    assert figures["broker_rss_peak_mib"] > 0 and figures["rtt_median_ms"] > 0
