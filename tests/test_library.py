"""The library in SQLite: stories, where the child stopped, settings, command ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hearmylove.library import Library

pytestmark = pytest.mark.fast


def test_stories_keep_order_positions_and_listening(tmp_path: Path) -> None:
    lib = Library(tmp_path / "l.sqlite3")
    assert lib.put_story("a", "A", "Once.", "en", None) is True
    assert lib.put_story("b", "B", "Twice.", "en", None) is True
    assert [s.id for s in lib.stories()] == ["a", "b"]
    assert lib.after("a").id == "b" and lib.after("b").id == "a" and lib.after(None).id == "a"  # type: ignore[union-attr]
    assert lib.newest_unheard().id == "b"  # type: ignore[union-attr]
    lib.mark_told("b")
    lib.set_position("b", 12.5)
    assert lib.newest_unheard().id == "a" and lib.last_told().id == "b"  # type: ignore[union-attr]
    assert lib.get("b").position == 12.5  # type: ignore[union-attr]
    lib.finished("b")
    b = lib.get("b")
    assert b is not None and b.position == 0 and b.times_finished == 1
    assert lib.put_story("b", "B2", "Again.", "en", None) is False  # replaced: starts over, unheard
    assert lib.get("b").heard is False  # type: ignore[union-attr]
    assert lib.delete("a") and not lib.delete("a")


def test_command_ids_are_remembered_and_bounded(tmp_path: Path) -> None:
    lib = Library(tmp_path / "l.sqlite3", max_command_ids=5)
    for i in range(8):
        lib.remember(f"c{i}", "ping", '{"ok": true}')
    assert lib.command_count() == 5
    assert lib.seen("c7") == '{"ok": true}' and lib.seen("c0") is None


def test_everything_survives_a_kill_mid_session(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    code = (
        "import os, sys\n"
        "from hearmylove.library import Library\n"
        "lib = Library(sys.argv[1])\n"
        "lib.put_story('s', 'S', 'Text.', 'en', None); lib.set_position('s', 42.0)\n"
        "lib.remember('cmd-1', 'story.put', '{}'); lib.put_settings({'volume': 0.3})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=False, timeout=60)
    lib = Library(path)
    assert lib.get("s").position == 42.0  # type: ignore[union-attr]
    assert lib.seen("cmd-1") == "{}" and lib.settings() == {"volume": 0.3}
