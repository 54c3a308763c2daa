"""The production event log on PostgreSQL: the connection pool, the schema migrations and every SQL statement.

* A batch is one `INSERT ... SELECT FROM unnest(...)` statement (one round trip, parameterised, atomic)
  with `ON CONFLICT (event_id) DO NOTHING RETURNING event_id`: a retried batch is stored once and the
  caller learns which events were new.
* Migrations are the numbered files in `migrations/` (`0001_name.sql`, ...), applied in order, each recorded
  in `<schema>.schema_migrations`, all under a transaction-scoped advisory lock so that replicas starting
  together do not race. They run at gateway start-up and with `python -m services.gateway.migrate`.
* Any failure to reach or write PostgreSQL — no connection within the timeout, a dropped connection, a
  server error — raises `Unavailable`; `RecordFeedback` then answers UNAVAILABLE and the client retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.common.errors import Unavailable
from services.gateway.eventlog import Event, Impression

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK_NAMESPACE = "recsys.eventlog:"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `folder`, by version; versions must run 1, 2, 3, ... without gaps."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named NNNN_lower_case_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..{len(found)} without gaps or repeats, got {versions}")
    return found


async def apply_migrations(conn: psycopg.AsyncConnection, schema: str) -> list[Migration]:
    """Brings `schema` up to date over an autocommit connection; returns the migrations it applied."""
    migrations = load_migrations()
    ident = sql.Identifier(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK_NAMESPACE + schema,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        cur = await conn.execute(sql.SQL("SELECT version FROM {}.schema_migrations").format(ident))
        done = {int(row[0]) for row in await cur.fetchall()}
        unknown = done - {m.version for m in migrations}
        if unknown:
            raise RuntimeError(f"schema {schema!r} has migrations {sorted(unknown)} this code does not know; upgrade")
        pending = [m for m in migrations if m.version not in done]
        # The migration files name tables without a schema; they land in `schema` for this transaction only.
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        for m in pending:
            await conn.execute(m.sql.encode())  # no parameters: may hold several statements
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)").format(ident),
                (m.version, m.name),
            )
    for m in pending:
        log.info("event log: applied migration %04d_%s to schema %s", m.version, m.name, schema)
    return pending


async def migrate(dsn: str, schema: str) -> list[Migration]:
    """Applies the pending migrations over a dedicated connection (the `migrate` command)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await apply_migrations(conn, schema)


class PostgresEventLog:
    """Events in `<schema>.events`, written through an `AsyncConnectionPool` opened by `open()`."""

    def __init__(
        self,
        dsn: str,
        schema: str = "recsys",
        max_connections: int = 10,
        timeout_s: float = 5.0,
        application_name: str = "recsys-gateway",
    ) -> None:
        if not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema {schema!r} must match {SCHEMA_NAME.pattern}")
        self.schema = schema
        self.timeout_s = timeout_s
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=timeout_s,
            # A connection the server dropped (restart, failover, pg_terminate_backend) is replaced before use.
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(2, round(timeout_s)),
                "application_name": application_name,  # names the gateway's connections in pg_stat_activity
            },
            name="event-log",
        )
        ident = sql.Identifier(schema)
        self._insert = sql.SQL(
            "INSERT INTO {}.events (event_id, user_id, item_id, event_type, value, ts, device, surface)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],"
            " %s::timestamptz[], %s::text[], %s::text[])"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ).format(ident)
        self._count = sql.SQL("SELECT count(*) FROM {}.events").format(ident)
        self._insert_impressions = sql.SQL(
            "INSERT INTO {}.impressions (request_id, position, user_id, item_id, bundle_version, source, score,"
            " retrieval, ranking, rerank, degraded, ts)"
            " SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::text[], %s::timestamptz[])"
            " ON CONFLICT (request_id, position) DO NOTHING"
        ).format(ident)
        self._count_impressions = sql.SQL("SELECT count(*) FROM {}.impressions").format(ident)
        self._migrated = False
        self._migrate_lock = asyncio.Lock()

    async def open(self) -> None:
        await self.pool.open(wait=False)
        try:
            await self._ensure_migrated()
        except Unavailable as exc:
            log.warning("event log: %s; RecordFeedback answers UNAVAILABLE until PostgreSQL is reachable", exc.message)

    async def _ensure_migrated(self) -> None:
        if self._migrated:
            return
        async with self._migrate_lock:
            if self._migrated:
                return
            try:
                async with asyncio.timeout(self.timeout_s), self.pool.connection() as conn:
                    await apply_migrations(conn, self.schema)
            except (psycopg.Error, TimeoutError) as exc:
                raise Unavailable(f"the event log database is unreachable or failing: {_reason(exc)}") from exc
            self._migrated = True

    async def append(self, events: Sequence[Event]) -> list[Event]:
        if not events:
            return []
        columns = (
            [e.event_id for e in events],
            [e.user_id for e in events],
            [e.item_id for e in events],
            [e.event_type for e in events],
            [e.value for e in events],
            [datetime.fromtimestamp(e.timestamp, UTC) for e in events],
            [e.device for e in events],
            [e.surface for e in events],
        )
        stored = {row[0] for row in await self._run(self._insert, columns, "could not store the batch")}
        return [e for e in events if e.event_id in stored]

    async def _run(self, statement: sql.Composed, params: Sequence[object] | None, failure: str) -> list[Any]:
        """Runs one statement (one transaction: autocommit) and returns its rows; Unavailable on failure.

        The deadline covers waiting for a connection and the statement. Running out of it may leave the
        outcome of a write unknown; writes are idempotent, so the client retries with the same ids.
        """
        await self._ensure_migrated()
        try:
            async with asyncio.timeout(self.timeout_s), self.pool.connection() as conn:
                cur = await conn.execute(statement, params)
                return await cur.fetchall() if cur.description else []
        except (psycopg.Error, TimeoutError) as exc:
            raise Unavailable(f"the event log {failure}: {_reason(exc)}") from exc

    async def count(self) -> int:
        rows = await self._run(self._count, None, "could not be read")
        return int(rows[0][0]) if rows else 0

    async def append_impressions(self, impressions: Sequence[Impression]) -> None:
        if not impressions:
            return
        columns = (
            [i.request_id for i in impressions],
            [i.position for i in impressions],
            [i.user_id for i in impressions],
            [i.item_id for i in impressions],
            [i.bundle_version for i in impressions],
            [i.source for i in impressions],
            [i.score for i in impressions],
            [i.retrieval for i in impressions],
            [i.ranking for i in impressions],
            [i.rerank for i in impressions],
            [i.degraded for i in impressions],
            [datetime.fromtimestamp(i.timestamp, UTC) for i in impressions],
        )
        await self._run(self._insert_impressions, columns, "could not store impressions")

    async def count_impressions(self) -> int:
        rows = await self._run(self._count_impressions, None, "could not be read")
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        await self.pool.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
