"""The speaker's memory, in SQLite (WAL): stories, where the child stopped, settings,
and the command ids already executed (so a command resent by the broker runs once).

One connection guarded by a lock: writes are tiny and rare, and SQLite in WAL mode
survives a power cut with the last committed transaction intact.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stories (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    lang TEXT NOT NULL,
    voice TEXT,
    added_at REAL NOT NULL,
    position REAL NOT NULL DEFAULT 0,
    duration REAL,
    times_finished INTEGER NOT NULL DEFAULT 0,
    last_told_at REAL,
    heard INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    received_at REAL NOT NULL,
    reply TEXT
);
CREATE INDEX IF NOT EXISTS commands_by_time ON commands (received_at);
CREATE TABLE IF NOT EXISTS schedule (
    command_id TEXT PRIMARY KEY,
    due REAL NOT NULL,
    command TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Story:
    """One story as the library keeps it (a snapshot: later changes make a new one)."""

    id: str
    title: str
    text: str
    lang: str
    """"en", "zh" or "auto"."""
    voice: str | None
    """The voice to tell it in; None: the active voice."""
    added_at: float
    """UNIX time it arrived (or was last replaced): the order the big button walks through."""
    position: float
    """Seconds into the story where the child stopped; 0 when finished or never played."""
    duration: float | None
    """Seconds of audio once rendered; None before."""
    times_finished: int
    heard: bool
    """Told at least once since it arrived (the LED blinks for unheard stories)."""


class Library:
    """The speaker's SQLite library at `path` (created with its folder when missing).

    Safe to call from any thread. Keeps the replies of the newest `max_command_ids`
    commands, so that a command the broker delivers again is answered, not run again.
    Raises sqlite3.Error when the file is not a database or the disk fails.
    """

    def __init__(self, path: Path, max_command_ids: int = 1000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_command_ids = max_command_ids
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database; the library cannot be used afterwards."""
        with self._lock:
            self._db.close()

    # -- stories ---------------------------------------------------------------

    def put_story(self, story_id: str, title: str, text: str, lang: str, voice: str | None) -> bool:
        """Add or replace a story; a replaced story starts over. True if it is new."""
        with self._tx() as db:
            existed = db.execute("SELECT 1 FROM stories WHERE id = ?", (story_id,)).fetchone() is not None
            db.execute(
                "INSERT INTO stories (id, title, text, lang, voice, added_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET title=excluded.title, text=excluded.text, lang=excluded.lang, "
                "voice=excluded.voice, added_at=excluded.added_at, position=0, duration=NULL, heard=0",
                (story_id, title, text, lang, voice, time.time()),
            )
        return not existed

    def get(self, story_id: str) -> Story | None:
        """The story with this id, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM stories WHERE id = ?", (story_id,)).fetchone()
        return _story(row) if row else None

    def delete(self, story_id: str) -> bool:
        """Remove the story; True if there was one."""
        with self._tx() as db:
            return db.execute("DELETE FROM stories WHERE id = ?", (story_id,)).rowcount > 0

    def stories(self) -> list[Story]:
        """In the order they arrived: the order the big button walks through."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM stories ORDER BY added_at, id").fetchall()
        return [_story(r) for r in rows]

    def newest_unheard(self) -> Story | None:
        """The latest story nobody has heard yet (what a single press plays first), or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM stories WHERE heard = 0 ORDER BY added_at DESC LIMIT 1").fetchone()
        return _story(row) if row else None

    def last_told(self) -> Story | None:
        """The story told most recently, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM stories WHERE last_told_at IS NOT NULL ORDER BY last_told_at DESC LIMIT 1"
            ).fetchone()
        return _story(row) if row else None

    def after(self, story_id: str | None) -> Story | None:
        """The story after `story_id` in arrival order, wrapping round."""
        stories = self.stories()
        if not stories:
            return None
        ids = [s.id for s in stories]
        if story_id not in ids:
            return stories[0]
        return stories[(ids.index(story_id) + 1) % len(stories)]

    def mark_told(self, story_id: str) -> None:
        """Note that the story is being told now: it is heard and the last told."""
        with self._tx() as db:
            db.execute("UPDATE stories SET last_told_at = ?, heard = 1 WHERE id = ?", (time.time(), story_id))

    def set_position(self, story_id: str, position: float) -> None:
        """Remember where the child stopped (seconds; negative counts as 0)."""
        with self._tx() as db:
            db.execute("UPDATE stories SET position = ? WHERE id = ?", (max(0.0, position), story_id))

    def set_duration(self, story_id: str, duration: float) -> None:
        """Record the seconds of audio once the story is rendered."""
        with self._tx() as db:
            db.execute("UPDATE stories SET duration = ? WHERE id = ?", (duration, story_id))

    def finished(self, story_id: str) -> None:
        """The child heard it to the end: count it, and start from the beginning next time."""
        with self._tx() as db:
            db.execute("UPDATE stories SET position = 0, times_finished = times_finished + 1 WHERE id = ?", (story_id,))

    # -- settings --------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The parents' settings stored so far (JSON values by key); missing keys mean the defaults."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def put_settings(self, values: dict[str, Any]) -> None:
        """Store these settings (JSON-serializable values), keeping the others."""
        with self._tx() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, json.dumps(value)),
                )

    # -- scheduled tells --------------------------------------------------------

    def schedule(self, command_id: str, due: float, command_json: str) -> None:
        """Keep a `story.tell` for later: `due` as a UNIX time, the command as JSON. Survives restarts."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO schedule (command_id, due, command) VALUES (?, ?, ?)",
                (command_id, due, command_json),
            )

    def scheduled(self) -> list[tuple[str, float, str]]:
        """(command id, due as a UNIX time, the command as JSON), soonest first."""
        with self._lock:
            rows = self._db.execute("SELECT command_id, due, command FROM schedule ORDER BY due").fetchall()
        return [(r["command_id"], r["due"], r["command"]) for r in rows]

    def unschedule(self, command_id: str) -> None:
        """Forget a scheduled command (told, missed or replaced)."""
        with self._tx() as db:
            db.execute("DELETE FROM schedule WHERE command_id = ?", (command_id,))

    # -- command ids -----------------------------------------------------------

    def seen(self, command_id: str) -> str | None:
        """The reply (JSON) already sent for this command id, or None if it is new."""
        with self._lock:
            row = self._db.execute("SELECT reply FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else str(row["reply"] or "")

    def remember(self, command_id: str, name: str, reply: str) -> None:
        """Record an executed command; only the newest `max_command_ids` are kept."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO commands (id, name, received_at, reply) VALUES (?, ?, ?, ?)",
                (command_id, name, time.time(), reply),
            )
            db.execute(
                "DELETE FROM commands WHERE id NOT IN (SELECT id FROM commands ORDER BY received_at DESC LIMIT ?)",
                (self.max_command_ids,),
            )

    def command_count(self) -> int:
        """How many command ids are remembered (at most `max_command_ids`)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM commands").fetchone()[0])


def _story(row: sqlite3.Row) -> Story:
    return Story(
        id=row["id"],
        title=row["title"],
        text=row["text"],
        lang=row["lang"],
        voice=row["voice"],
        added_at=row["added_at"],
        position=row["position"],
        duration=row["duration"],
        times_finished=row["times_finished"],
        heard=bool(row["heard"]),
    )
