"""Impression logging: every Recommend answer goes to the event log without delaying the response.

Answers are queued (bounded) and a background task writes them in batches. Backpressure, not silent loss:
when the queue is full the request waits up to `backpressure_s` for room; only then is the impression
dropped, and that is counted (`dropped`, the `recsys.impressions.dropped` metric) and logged. A failed
write keeps the batch and retries with backoff, so a store outage fills the queue, which the metrics show.
On shutdown the queue is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from opentelemetry import metrics
from opentelemetry.metrics import Observation

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from services.common.errors import Unavailable
from services.gateway.eventlog import EventLog, Impression

log = logging.getLogger(__name__)
_meter = metrics.get_meter("recsys.gateway")
_queue_full = _meter.create_counter("recsys.impressions.queue_full", description="Answers that met a full queue")
_dropped = _meter.create_counter("recsys.impressions.dropped", description="Answers not logged (queue full)")
_written = _meter.create_counter("recsys.impressions.written", description="Impression rows written")


def impressions_of(user_id: str, reply: gateway_pb2.RecommendResponse) -> list[Impression]:
    now = time.time()
    degraded = ",".join(common_pb2.Stage.Name(s).removeprefix("STAGE_").lower() for s in reply.degraded_stages)
    return [
        Impression(
            request_id=reply.request_id,
            position=position,
            user_id=user_id,
            item_id=item.item_id,
            bundle_version=reply.bundle_version,
            source=common_pb2.CandidateSource.Name(item.source).removeprefix("CANDIDATE_SOURCE_").lower(),
            score=item.score,
            retrieval=item.stage_scores.retrieval,
            ranking=item.stage_scores.ranking,
            rerank=item.stage_scores.rerank,
            degraded=degraded,
            timestamp=now,
        )
        for position, item in enumerate(reply.items)
    ]


class ImpressionLogger:
    def __init__(
        self,
        event_log: EventLog,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        backpressure_s: float = 0.05,
    ) -> None:
        self.event_log = event_log
        self.queue: asyncio.Queue[list[Impression]] = asyncio.Queue(maxsize=max_queue)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.backpressure_s = backpressure_s
        self.queue_full = 0
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="impressions")
            _meter.create_observable_gauge(
                "recsys.impressions.queue_depth",
                callbacks=[lambda _options: [Observation(self.queue.qsize())]],
                description="Answers waiting in the impression queue",
            )

    async def submit(self, user_id: str, reply: gateway_pb2.RecommendResponse) -> None:
        rows = impressions_of(user_id, reply)
        if not rows:
            return
        try:
            self.queue.put_nowait(rows)
            return
        except asyncio.QueueFull:
            self.queue_full += 1
            _queue_full.add(1)
        try:
            async with asyncio.timeout(self.backpressure_s):
                await self.queue.put(rows)
        except TimeoutError:
            self.dropped += 1
            _dropped.add(1)
            log.error("impression queue full (%d answers): request %s not logged", self.queue.qsize(), reply.request_id)

    async def _run(self) -> None:
        while True:
            batch = await self.queue.get()
            deadline = time.monotonic() + self.flush_interval_s
            while len(batch) < self.batch_size and (remaining := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        batch.extend(await self.queue.get())
                except TimeoutError:
                    break
            await self._write(batch)

    async def _write(self, batch: list[Impression]) -> None:
        delay = 0.1
        while True:
            try:
                await self.event_log.append_impressions(batch)
            except Unavailable as exc:
                log.warning("impressions not written yet (%s); retrying in %.1fs", exc.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.written += len(batch)
            _written.add(len(batch))
            return

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stops the writer, then flushes what is still queued (bounded by `timeout_s`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        rest: list[Impression] = []
        while not self.queue.empty():
            rest.extend(self.queue.get_nowait())
        if rest:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._write(rest)
            except TimeoutError:
                log.error("%d impressions not written at shutdown", len(rest))
