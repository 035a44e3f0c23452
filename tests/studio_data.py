"""Real recordings from ../shared/evalset for the studio's tests (read in place, never copied)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

EVALSET = Path(__file__).resolve().parents[2] / "shared" / "evalset"


def utterances(speaker: str) -> list[dict[str, str]]:
    manifest = EVALSET / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"the evaluation set is not at {EVALSET}")
    rows = [r for r in csv.DictReader(open(manifest, encoding="utf-8")) if r["speaker"] == speaker]
    return sorted(rows, key=lambda r: r["utt_id"])


def paths(speaker: str, n: int | None = None) -> list[Path]:
    return [EVALSET / r["path"] for r in utterances(speaker)[:n]]
