"""No acknowledged feedback is lost and none is stored twice while the gateway process is SIGKILLed and
restarted under load: concurrent clients retry UNAVAILABLE and connection errors with the same event ids,
and at the end PostgreSQL holds exactly the acknowledged events. Also measures the ingestion rate."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql

from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tools.stack import SERVICES, Stack, free_port

from ..conftest import private_feature_repo

pytestmark = pytest.mark.e2e

RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture(params=[pytest.param(False, id="no-push")])
def gateway_only(
    request: pytest.FixtureRequest, bundle, postgres_dsn: str, pg_schema: str, offline_dir: Path, tmp_path: Path
) -> Iterator[Stack]:
    """The gateway process alone (Recommend is not exercised), writing feedback to a fresh schema; with the
    `push` param, also pushing fresh features as `make run` does, into a private copy of the Feast repository
    (the shared online store stays untouched)."""
    push = bool(request.param)
    env = {
        "RECSYS_GATEWAY_EVENT_LOG_DSN": postgres_dsn,
        "RECSYS_GATEWAY_EVENT_LOG_SCHEMA": pg_schema,
        "RECSYS_GATEWAY_PUSH_FEATURES": str(push).lower(),
        "RECSYS_LOG_JSON": "false",
    }
    if push:
        env["RECSYS_FEATURE_REPO"] = str(private_feature_repo(tmp_path, offline_dir))
    stack = Stack(ports={s: free_port() for s in SERVICES}, env=env, log_dir=tmp_path / "logs")
    stack.start(("gateway",))
    try:
        stack.wait_serving(timeout=240)
        yield stack
    finally:
        stack.stop()


def _batch(client: int, seq: int, size: int) -> gateway_pb2.RecordFeedbackRequest:
    return gateway_pb2.RecordFeedbackRequest(
        events=[
            gateway_pb2.FeedbackEvent(
                event_id=f"c{client}-b{seq}-{i}",
                user_id=str(1 + (client * 7 + i) % 943),
                item_id=str(1 + (seq * 13 + i) % 1682),
                type=gateway_pb2.FEEDBACK_TYPE_CLICK,
            )
            for i in range(size)
        ]
    )


async def _client(address: str, client: int, size: int, stop: asyncio.Event, acked: set[str]) -> int:
    """Sends batches until `stop`; retries each batch (same ids) until it is acknowledged. Returns retries."""
    retries = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for seq in itertools.count():
            if stop.is_set():
                break
            batch = _batch(client, seq, size)
            while True:  # the same batch, with the same event ids, until it is acknowledged
                try:
                    reply = await stub.RecordFeedback(batch, timeout=10)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() in RETRIED, exc
                    retries += 1
                    await asyncio.sleep(0.2)
            assert reply.accepted == size and not reply.rejected
            acked.update(e.event_id for e in batch.events)
    return retries


async def _stored(dsn: str, schema: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*), count(DISTINCT event_id) FROM {}.events").format(sql.Identifier(schema))
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize(
    ("n_clients", "seconds"),
    [
        pytest.param(12, 20, id="12-clients-20s"),
        # The full-length scenario; minutes of wall time, so opt in with --run-bench.
        pytest.param(20, 60, id="20-clients-60s", marks=pytest.mark.bench),
    ],
)
async def test_no_acknowledged_event_is_lost_or_duplicated_across_sigkill(
    gateway_only: Stack, postgres_dsn: str, pg_schema: str, n_clients: int, seconds: int
) -> None:
    address = gateway_only.address("gateway")
    stop = asyncio.Event()
    acked: set[str] = set()
    clients = [asyncio.create_task(_client(address, c, 20, stop, acked)) for c in range(n_clients)]
    kills = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds or kills < 2:  # a slow host restarts slower: still kill twice
        await asyncio.sleep(3)
        proc = gateway_only.processes["gateway"]
        os.kill(proc.pid, signal.SIGKILL)  # no drain: calls in flight die mid-transaction
        await asyncio.to_thread(proc.wait)
        kills += 1
        gateway_only.start(("gateway",))
        await asyncio.to_thread(gateway_only.wait_serving, 240)
    await asyncio.sleep(2)
    stop.set()
    retries = sum(await asyncio.gather(*clients))
    rows, distinct = await _stored(postgres_dsn, pg_schema)
    assert retries > 0, "the gateway was killed under load (at least twice, by the loop) and clients had to retry"
    assert rows == distinct == len(acked) > 0, f"stored {rows} rows, {distinct} distinct; acknowledged {len(acked)}"
    print(f"\n{n_clients} clients, {seconds} s, {kills} SIGKILLs: {len(acked)} acknowledged, {rows} stored")


@pytest.mark.bench
@pytest.mark.parametrize(
    "gateway_only", [pytest.param(False, id="no-push"), pytest.param(True, id="push")], indirect=True
)
async def test_ingestion_rate(gateway_only: Stack, postgres_dsn: str, pg_schema: str) -> None:
    """Sustained events/s with batches of 100 from 8 concurrent clients for 15 s, with and without the fresh
    feature pushes (opt in: --run-bench)."""
    stop = asyncio.Event()
    acked: set[str] = set()
    clients = [asyncio.create_task(_client(gateway_only.address("gateway"), c, 100, stop, acked)) for c in range(8)]
    await asyncio.sleep(3)  # warm-up
    before, started = len(acked), time.monotonic()
    await asyncio.sleep(15)
    after, elapsed = len(acked), time.monotonic() - started
    stop.set()
    await asyncio.gather(*clients)
    rows, _ = await _stored(postgres_dsn, pg_schema)
    assert rows == len(acked)
    print(f"\ningestion: {(after - before) / elapsed:,.0f} events/s ({after - before} events in {elapsed:.1f} s)")
