"""Every Recommend answer reaches the impression log, without a silent drop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.eventlog.sqlite import SqliteEventLog
from services.gateway.impressions import ImpressionLogger

from ..waiting import eventually_async


async def test_each_answer_is_logged_with_positions_and_stage_scores(gateway_server) -> None:
    stub = gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{gateway_server.port}"))
    reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=7))
    app = gateway_server.app
    path = app.settings.event_log_path

    def logged() -> list[tuple]:
        with sqlite3.connect(path) as conn:
            return conn.execute(
                "SELECT position, user_id, item_id, bundle_version, source, ranking, score FROM impressions"
                " WHERE request_id = ? ORDER BY position",
                (reply.request_id,),
            ).fetchall()

    rows = await eventually_async(logged, timeout=5, message="the writer flushes within its interval (0.2 s)")
    assert [r[0] for r in rows] == list(range(7))
    assert [r[2] for r in rows] == [i.item_id for i in reply.items]
    assert {r[1] for r in rows} == {"196"} and {r[3] for r in rows} == {reply.bundle_version}
    sources = [common_pb2.CandidateSource.Name(i.source).removeprefix("CANDIDATE_SOURCE_").lower() for i in reply.items]
    assert [r[4] for r in rows] == sources and set(sources) <= {"embedding", "history_affinity"}
    assert [round(r[5], 5) for r in rows] == [round(i.stage_scores.ranking, 5) for i in reply.items]


def _reply(n: int) -> gateway_pb2.RecommendResponse:
    return gateway_pb2.RecommendResponse(
        request_id=f"r{n}", bundle_version="v", items=[gateway_pb2.RecommendedItem(item_id="50", score=1.0)]
    )


async def test_a_full_queue_applies_backpressure_then_counts_drops(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    await log.open()
    logger = ImpressionLogger(log, max_queue=2, backpressure_s=0.01)  # writer not started: nothing drains
    for n in range(5):
        await logger.submit("u", _reply(n))
    assert (logger.queue_full, logger.dropped) == (3, 3), "every answer beyond the queue is counted"
    await logger.close()  # flushes what was queued
    assert logger.written == 2 and await log.count_impressions() == 2
    await log.close()


async def test_a_store_outage_keeps_the_batch_and_retries(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")  # not open yet: writes fail with Unavailable
    logger = ImpressionLogger(log, flush_interval_s=0.01)
    logger.start()
    await logger.submit("u", _reply(1))
    await asyncio.sleep(0.3)  # what is checked: during the outage the batch is neither written nor dropped
    assert logger.written == 0 and logger.dropped == 0
    await log.open()
    await eventually_async(lambda: logger.written, timeout=10, message="the kept batch is written once the store is up")
    assert logger.written == 1 and await log.count_impressions() == 1
    await logger.close()
    await log.close()
