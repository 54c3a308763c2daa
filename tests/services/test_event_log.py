"""The event log contract, run against both implementations (embedded SQLite and PostgreSQL), and the
gateway's RecordFeedback when PostgreSQL goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.errors import Unavailable
from services.common.server import start_and_load
from services.gateway import migrate as migrate_command
from services.gateway.eventlog import Event, EventLog, Impression
from services.gateway.eventlog.postgres import PostgresEventLog, load_migrations
from services.gateway.eventlog.sqlite import SqliteEventLog
from services.gateway.servicer import GatewayApp
from tools.stack import free_port

from ..waiting import eventually_async
from .conftest import Servers, gateway_settings

OpenLog = Callable[[], Awaitable[EventLog]]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenLog]:
    """Opens event logs over one store (a file, or a fresh PostgreSQL schema); closes them all afterwards."""
    if request.param == "sqlite":

        def make() -> EventLog:
            return SqliteEventLog(tmp_path / "events.db")
    else:
        dsn, schema = request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema")

        def make() -> EventLog:
            return PostgresEventLog(dsn, schema=schema, timeout_s=5.0)

    opened: list[EventLog] = []

    async def open_() -> EventLog:
        log = make()
        await log.open()
        opened.append(log)
        return log

    yield open_
    for log in opened:
        await log.close()


async def test_impressions_are_stored_once_per_request_and_position(open_log: OpenLog) -> None:
    log = await open_log()
    rows = [
        Impression(f"req-{r}", p, "u1", str(p), "v1", "embedding", 0.9 - p / 10, 3.0, 0.4, 0.9, "", 1.7e9)
        for r in range(3)
        for p in range(5)
    ]
    await log.append_impressions(rows)
    await log.append_impressions(rows[:5])  # a retried flush
    assert await log.count_impressions() == 15
    assert await log.count() == 0, "impressions are not feedback events"


def _events(prefix: str, n: int, user: str = "u") -> list[Event]:
    return [Event(f"{prefix}-{i}", user, str(i), "click", 1.0, 1_700_000_000.0 + i) for i in range(n)]


async def test_each_event_id_is_stored_once(open_log: OpenLog) -> None:
    log = await open_log()
    batch = _events("e", 100)
    assert await log.append(batch) == batch
    assert await log.append([]) == []
    fresh = Event("new", "u", "x", "rating", 4.0, time.time(), device="DEVICE_TYPE_MOBILE", surface="home")
    assert await log.append([*batch[50:], fresh]) == [fresh], "a retried event is a duplicate, not new"
    assert await log.count() == 101


async def test_acknowledged_events_survive_a_reopen(open_log: OpenLog) -> None:
    first = await open_log()
    await first.append(_events("e", 10))
    await first.close()
    again = await open_log()
    assert await again.count() == 10
    assert await again.append(_events("e", 10)) == []


async def test_a_failing_batch_stores_nothing(open_log: OpenLog) -> None:
    log = await open_log()
    broken = Event("bad", None, "1", "click", 1.0, 0.0)  # type: ignore[arg-type]  # violates NOT NULL
    with pytest.raises(Unavailable):
        await log.append([*_events("e", 5), broken])
    assert await log.count() == 0, "a batch is all or nothing"


async def test_concurrent_overlapping_writers_store_every_id_once(open_log: OpenLog) -> None:
    log = await open_log()

    async def writer(w: int) -> int:
        new = 0
        for b in range(10):
            # Writers share half their ids with the next writer: retries racing each other.
            batch = [*_events(f"{w}-{b}", 10), *_events(f"{(w + 1) % 6}-{b}", 10)]
            new += len(await log.append(batch))
        return new

    stored = await asyncio.gather(*(writer(w) for w in range(6)))
    assert sum(stored) == await log.count() == 6 * 10 * 10


# -- PostgreSQL only -----------------------------------------------------------------------------------


async def _versions(dsn: str, schema: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version").format(sql.Identifier(schema))
        )
        return [int(row[0]) for row in await cur.fetchall()]


async def test_migrations_are_versioned_and_applied_once(postgres_dsn: str, pg_schema: str, capsys) -> None:
    known = [m.version for m in load_migrations()]
    assert known == list(range(1, len(known) + 1)) and len(known) >= 2
    await asyncio.to_thread(migrate_command.main, ["--dsn", postgres_dsn, "--schema", pg_schema])
    assert "applied 0001_create_events" in capsys.readouterr().out
    assert await _versions(postgres_dsn, pg_schema) == known
    # Replicas starting together: every one opens, none applies anything twice.
    logs = [PostgresEventLog(postgres_dsn, schema=pg_schema) for _ in range(3)]
    await asyncio.gather(*(log.open() for log in logs))
    assert await _versions(postgres_dsn, pg_schema) == known
    for log in logs:
        await log.close()
    await asyncio.to_thread(migrate_command.main, ["--dsn", postgres_dsn, "--schema", pg_schema])
    assert "is up to date" in capsys.readouterr().out


async def test_unreachable_postgres_is_unavailable_never_success() -> None:
    log = PostgresEventLog(f"postgresql://postgres@127.0.0.1:{free_port()}/test", schema="recsys", timeout_s=1.0)
    await log.open()  # the gateway still starts; only RecordFeedback is affected
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="unreachable"):
            await log.append(_events("e", 3))
        assert time.monotonic() - started < 5
    finally:
        await log.close()


async def test_dropped_connections_are_replaced(postgres_dsn: str, pg_schema: str) -> None:
    name = f"recsys-test-{uuid.uuid4().hex[:8]}"
    log = PostgresEventLog(postgres_dsn, schema=pg_schema, application_name=name)
    await log.open()
    try:
        await log.append(_events("a", 5))
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s) AS t",
                (name,),
            )
            row = await cur.fetchone()
            assert row is not None and row[0] >= 1
        assert len(await log.append(_events("b", 5))) == 5
        assert await log.count() == 10
    finally:
        await log.close()


# -- The gateway in front of a PostgreSQL that goes away -----------------------------------------------


class TcpProxy:
    """A TCP relay to PostgreSQL that the test can cut (refusing and dropping connections) and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


def _feedback(prefix: str, n: int) -> gateway_pb2.RecordFeedbackRequest:
    return gateway_pb2.RecordFeedbackRequest(
        events=[
            gateway_pb2.FeedbackEvent(
                event_id=f"{prefix}-{i}", user_id="196", item_id="50", type=gateway_pb2.FEEDBACK_TYPE_CLICK
            )
            for i in range(n)
        ]
    )


async def _record_retrying(
    stub: gateway_pb2_grpc.GatewayServiceStub, request: gateway_pb2.RecordFeedbackRequest
) -> gateway_pb2.RecordFeedbackResponse:
    """What a client does: retry UNAVAILABLE with the same event ids (the pool may still be reconnecting)."""
    return await eventually_async(
        lambda: stub.RecordFeedback(request, timeout=10),
        timeout=15,
        interval=0.5,
        message="RecordFeedback is accepted once the event log is reachable",
        retry_on=lambda exc: isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE,
    )


async def test_record_feedback_is_unavailable_while_postgres_is_unreachable(
    stage_servers: Servers, common_settings, postgres_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    params = conninfo_to_dict(postgres_dsn)
    proxy = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await proxy.start()
    settings = gateway_settings(
        stage_servers,
        tmp_path,
        event_log_dsn=make_conninfo(postgres_dsn, host="127.0.0.1", port=proxy.port),
        event_log_schema=pg_schema,
        event_log_timeout_s=1.0,
    )
    server = await start_and_load(GatewayApp(settings, common_settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    try:
        assert (await _record_retrying(stub, _feedback("before", 10))).accepted == 10
        await proxy.cut()
        for attempt in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RecordFeedback(_feedback("during", 10), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, attempt
            assert "event log" in info.value.details()
        recommended = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=5))
        assert len(recommended.items) == 5, "recommendations do not depend on the event log"
        await proxy.start()
        retried = await _record_retrying(stub, _feedback("during", 10))
        assert (retried.accepted, retried.duplicates) == (10, 0), "nothing of the failed batch was stored"
    finally:
        await channel.close()
        await server.stop(0)
        await proxy.cut()
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}.events").format(sql.Identifier(pg_schema)))
        row = await cur.fetchone()
    assert row is not None and row[0] == 20
