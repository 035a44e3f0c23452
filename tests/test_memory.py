"""Memory stays flat however long the story: a 10-minute story under 450 MB peak RSS.

This renders ten minutes of speech (about five minutes on two cores), in a child
process so the peak is the engine's alone. Speed is not asserted here: bench/ reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_ten_minute_story_renders_in_bounded_memory(model_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "render_peak.py"), str(ROOT / "bench" / "texts" / "fox_en.txt"), "6"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["audio_s"] >= 600, figures
    assert figures["peak_rss_mb"] < 450, figures
