"""The embedded event log: one SQLite file, for a single gateway process (local runs and tests)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from services.common.errors import Unavailable
from services.gateway.eventlog import Event, Impression

T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS impressions (
    request_id     TEXT NOT NULL,
    position       INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    item_id        TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    source         TEXT NOT NULL,
    score          REAL NOT NULL,
    retrieval      REAL NOT NULL,
    ranking        REAL NOT NULL,
    rerank         REAL NOT NULL,
    degraded       TEXT NOT NULL DEFAULT '',
    ts             REAL NOT NULL,
    PRIMARY KEY (request_id, position)
);
CREATE INDEX IF NOT EXISTS impressions_user_ts ON impressions (user_id, ts);
"""

# Only a repeated event id is skipped; any other constraint failure fails the batch (never a silent drop).
_INSERT_IMPRESSION = (
    "INSERT INTO impressions (request_id, position, user_id, item_id, bundle_version, source, score, retrieval,"
    " ranking, rerank, degraded, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (request_id, position) DO NOTHING"
)
_INSERT = (
    "INSERT INTO events (event_id, user_id, item_id, event_type, value, ts, device, surface)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


class SqliteEventLog:
    """SQLite in WAL mode with synchronous=FULL: an acknowledged batch survives a crash.

    The blocking calls run in a worker thread (`asyncio.to_thread`); a lock serialises the writers.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            self._conn = conn

    async def append(self, events: Sequence[Event]) -> list[Event]:
        if not events:
            return []
        return await asyncio.to_thread(self._append, events)

    def _transaction(self, what: str, write: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `write` in one write transaction; any failure rolls it back and raises Unavailable."""
        try:
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = write(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise Unavailable(f"the event log could not store {what}: {exc}") from exc
        return result

    def _append(self, events: Sequence[Event]) -> list[Event]:
        def write(conn: sqlite3.Connection) -> list[Event]:
            rows = [
                (e.event_id, e.user_id, e.item_id, e.event_type, e.value, e.timestamp, e.device, e.surface)
                for e in events
            ]
            return [e for e, row in zip(events, rows, strict=True) if conn.execute(_INSERT, row).rowcount == 1]

        return self._transaction("the batch", write)

    async def count(self) -> int:
        return await asyncio.to_thread(self._count)

    async def append_impressions(self, impressions: Sequence[Impression]) -> None:
        if impressions:
            await asyncio.to_thread(self._append_impressions, impressions)

    def _append_impressions(self, impressions: Sequence[Impression]) -> None:
        rows = [
            (i.request_id, i.position, i.user_id, i.item_id, i.bundle_version, i.source, i.score, i.retrieval,
             i.ranking, i.rerank, i.degraded, i.timestamp)
            for i in impressions
        ]  # fmt: skip
        self._transaction("impressions", lambda conn: conn.executemany(_INSERT_IMPRESSION, rows))

    async def count_impressions(self) -> int:
        return await asyncio.to_thread(self._count_table, "impressions")

    def _count_table(self, table: str) -> int:
        with self._lock:
            return int(self._connection().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def _count(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT count(*) FROM events").fetchone()[0])

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise Unavailable("the event log is not open")
        return self._conn

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
