"""The interaction event log behind `RecordFeedback`.

`EventLog` is the interface; `SqliteEventLog` is the embedded default. The event id is the primary key, so
a retried batch is stored once. A batch is one transaction: it is either durably stored or the call fails
(and the client retries) — never acknowledged and lost.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.errors import Unavailable


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    value: float
    timestamp: float  # seconds since the epoch
    device: str = ""
    surface: str = ""


class EventLog(Protocol):
    def append(self, events: list[Event]) -> int:
        """Stores the events not stored yet; returns how many were new. Raises Unavailable on failure."""
        ...

    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    value      REAL NOT NULL,
    ts         REAL NOT NULL,
    device     TEXT NOT NULL DEFAULT '',
    surface    TEXT NOT NULL DEFAULT '',
    received   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX IF NOT EXISTS events_user_ts ON events (user_id, ts);
"""


# Only a repeated event id is skipped; any other constraint failure fails the batch (never a silent drop).
_INSERT = (
    "INSERT INTO events (event_id, user_id, item_id, event_type, value, ts, device, surface)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


class SqliteEventLog:
    """SQLite in WAL mode with synchronous=FULL: an acknowledged batch survives a crash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def append(self, events: list[Event]) -> int:
        rows = [
            (e.event_id, e.user_id, e.item_id, e.event_type, e.value, e.timestamp, e.device, e.surface) for e in events
        ]
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    before = self._conn.total_changes
                    self._conn.executemany(_INSERT, rows)
                    new = self._conn.total_changes - before
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise Unavailable(f"the event log could not store the batch: {exc}") from exc
        return new

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
