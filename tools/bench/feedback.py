"""The feedback path of one gateway process writing to PostgreSQL: `recsys bench ingestion` and
`recsys bench sigkill`.

- `run_ingestion`: sustained `RecordFeedback` events/s, batches of 100 click events with new ids from 8
  concurrent clients, counted over 15 s after a 3 s warm-up, with the fresh-feature pushes off and on (on: into
  a private copy of the Feast repository, so the shared online store stays untouched). PostgreSQL must then
  hold exactly the acknowledged events.
- `run_sigkill`: the durability scenario at full length: 20 clients for 60 s while the gateway process is
  SIGKILLed every 3 s and restarted; every acknowledged event must be stored exactly once.

Each run writes to a fresh schema of the server at `dsn`, dropped afterwards. The end-to-end test of the same
guarantee (`tests/e2e/test_feedback_reliability.py`) runs `sigkill_under_load` shorter.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg
from psycopg import sql

from artifacts.paths import DEFAULT_VAR, REPO_ROOT
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tools.stack import SERVICES, Stack, free_port

#: What a client retries, with the same event ids: the gateway is restarting or did not answer in time.
RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
#: The pause before a client sends a failed batch again.
RETRY_PAUSE_S = 0.2


def feedback_batch(client: int, seq: int, size: int) -> gateway_pb2.RecordFeedbackRequest:
    """Batch `seq` of `client`: `size` clicks with ids unique to both, on MovieLens users and items."""
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


async def feedback_client(address: str, client: int, size: int, stop: asyncio.Event, acked: set[str]) -> int:
    """Sends batches back to back until `stop`, each until it is acknowledged (same ids on every retry), and
    adds the acknowledged ids to `acked`. Returns how many calls it retried."""
    retries = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for seq in itertools.count():
            if stop.is_set():
                break
            batch = feedback_batch(client, seq, size)
            while True:
                try:
                    reply = await stub.RecordFeedback(batch, timeout=10)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in RETRIED:
                        raise
                    retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)  # a client's back-off, part of the load it generates
            if reply.accepted != size or reply.rejected:
                raise RuntimeError(f"batch {seq} of client {client} not wholly accepted: {reply}")
            acked.update(e.event_id for e in batch.events)
    return retries


async def stored_events(dsn: str, schema: str) -> tuple[int, set[str]]:
    """(rows, the distinct event ids) of `schema`.events."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql.SQL("SELECT event_id FROM {}.events").format(sql.Identifier(schema)))
        ids = [str(row[0]) for row in await cur.fetchall()]
    return len(ids), set(ids)


def stored_vs_acknowledged(rows: int, stored: set[str], acked: set[str]) -> dict[str, Any]:
    """What a run must show: every acknowledged event stored once, nothing stored that was not acknowledged."""
    return {
        "acknowledged": len(acked),
        "stored_rows": rows,
        "lost": len(acked - stored),
        "duplicates": rows - len(stored),
        "stored_unacknowledged": len(stored - acked),
        "exactly_the_acknowledged": rows == len(stored) and stored == acked,
    }


def private_feature_repo(tmp: Path, var: Path = DEFAULT_VAR) -> Path:
    """A copy of features/ in `tmp` whose ../var paths resolve inside `tmp`: the offline sources of `var`
    linked (only read), a copy of its materialised online store, and a registry applied from the definitions."""
    repo = tmp / "features"
    shutil.copytree(REPO_ROOT / "features", repo, ignore=shutil.ignore_patterns("__pycache__", "environments"))
    (tmp / "var" / "data").mkdir(parents=True)
    (tmp / "var" / "data" / "feast").symlink_to((var / "data" / "feast").resolve())
    (tmp / "var" / "feast").mkdir()
    shutil.copy2(var / "feast" / "online_store.db", tmp / "var" / "feast" / "online_store.db")
    feast = shutil.which("feast") or str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True, timeout=300)
    return repo


@contextmanager
def gateway_only(dsn: str, schema: str, log_dir: Path, feature_repo: Path | None = None) -> Iterator[Stack]:
    """The gateway process alone on a free port (Recommend is not exercised), writing feedback to `schema`;
    with `feature_repo`, also pushing fresh features into it as `make run` does."""
    env = {
        "RECSYS_GATEWAY_EVENT_LOG_DSN": dsn,
        "RECSYS_GATEWAY_EVENT_LOG_SCHEMA": schema,
        "RECSYS_GATEWAY_PUSH_FEATURES": str(feature_repo is not None).lower(),
        "RECSYS_LOG_JSON": "false",
    }
    if feature_repo is not None:
        env["RECSYS_FEATURE_REPO"] = str(feature_repo)
    stack = Stack(ports={s: free_port() for s in SERVICES}, env=env, log_dir=log_dir)
    stack.start(("gateway",))
    try:
        stack.wait_serving(timeout=240)
        yield stack
    finally:
        stack.stop()


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A unique schema name for one run (the gateway's migrations create it); dropped with its tables after."""
    schema = f"recsys_bench_{uuid.uuid4().hex[:10]}"
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def sigkill_under_load(
    stack: Stack, dsn: str, schema: str, clients: int, seconds: float, batch_size: int = 20, every_s: float = 3.0
) -> dict[str, Any]:
    """`clients` concurrent clients send feedback while the gateway is SIGKILLed every `every_s` seconds (at
    least twice, however slowly it restarts) and restarted, for `seconds`. Returns what was acknowledged and
    stored: `exactly_the_acknowledged` must be true."""
    address = stack.address("gateway")
    stop = asyncio.Event()
    acked: set[str] = set()
    tasks = [asyncio.create_task(feedback_client(address, c, batch_size, stop, acked)) for c in range(clients)]
    kills = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds or kills < 2:
            await asyncio.sleep(every_s)  # the kill schedule: load runs this long between kills
            proc = stack.processes["gateway"]
            os.kill(proc.pid, signal.SIGKILL)  # no drain: calls in flight die mid-transaction
            await asyncio.to_thread(proc.wait)
            kills += 1
            stack.start(("gateway",))
            await asyncio.to_thread(stack.wait_serving, 240)
        await asyncio.sleep(2)  # load on the last restarted process too, before the clients stop
    finally:
        stop.set()
        retries = sum(await asyncio.gather(*tasks))
    elapsed = time.monotonic() - started
    rows, stored = await stored_events(dsn, schema)
    return {
        "clients": clients,
        "batch_size": batch_size,
        "seconds": round(elapsed, 1),
        "sigkills": kills,
        "retries": retries,
        **stored_vs_acknowledged(rows, stored, acked),
    }


async def ingestion_rate(
    stack: Stack, dsn: str, schema: str, clients: int = 8, batch_size: int = 100, warmup_s: float = 3.0,
    duration_s: float = 15.0,
) -> dict[str, Any]:  # fmt: skip
    """Acknowledged events/s from `clients` sending `batch_size` batches back to back, over `duration_s` after
    `warmup_s`; then checks PostgreSQL holds exactly the acknowledged events."""
    stop = asyncio.Event()
    acked: set[str] = set()
    address = stack.address("gateway")
    tasks = [asyncio.create_task(feedback_client(address, c, batch_size, stop, acked)) for c in range(clients)]
    try:
        await asyncio.sleep(warmup_s)  # the warm-up is not measured
        before, started = len(acked), time.monotonic()
        await asyncio.sleep(duration_s)  # the measured window
        after, elapsed = len(acked), time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    rows, stored = await stored_events(dsn, schema)
    return {
        "clients": clients,
        "batch_size": batch_size,
        "window_s": round(elapsed, 2),
        "events": after - before,
        "events_per_s": round((after - before) / elapsed, 1),
        **stored_vs_acknowledged(rows, stored, acked),
    }


def run_ingestion(
    dsn: str, clients: int = 8, batch_size: int = 100, warmup_s: float = 3.0, duration_s: float = 15.0,
    push: Sequence[bool] = (False, True),
) -> dict[str, Any]:  # fmt: skip
    """`recsys bench ingestion`: `ingestion_rate` on a fresh gateway and schema for each `push` setting."""
    results: dict[str, Any] = {}
    for with_push in push:
        with tempfile.TemporaryDirectory(prefix="recsys-ingestion-") as tmp, fresh_schema(dsn) as schema:
            repo = private_feature_repo(Path(tmp)) if with_push else None
            with gateway_only(dsn, schema, Path(tmp) / "logs", repo) as stack:
                row = asyncio.run(ingestion_rate(stack, dsn, schema, clients, batch_size, warmup_s, duration_s))
        results["push" if with_push else "no-push"] = row
    return results


def run_sigkill(dsn: str, clients: int = 20, seconds: float = 60.0, batch_size: int = 20) -> dict[str, Any]:
    """`recsys bench sigkill`: `sigkill_under_load` at full length on a fresh gateway and schema."""
    with (
        tempfile.TemporaryDirectory(prefix="recsys-sigkill-") as tmp,
        fresh_schema(dsn) as schema,
        gateway_only(dsn, schema, Path(tmp) / "logs") as stack,
    ):
        return asyncio.run(sigkill_under_load(stack, dsn, schema, clients, seconds, batch_size))
