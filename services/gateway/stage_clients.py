"""The stages as the gateway reaches them: the Feast online store and the three gRPC stage services.

Each turns a failure (an RPC error, a store error, an answer that does not fit the request) into `Degraded`.
The deadline itself is enforced by the pipeline; the gRPC calls also carry it, so the stage stops working on a
call nobody waits for.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.errors import Unavailable
from services.gateway.stages import Candidates, Degraded, Picks
from services.gateway.user_features import UserFeatureReader

log = logging.getLogger(__name__)


def _rpc_failure(stage: str, exc: grpc.aio.AioRpcError) -> Degraded:
    return Degraded(stage, f"{exc.code().name} {exc.details()}")


class FeastFeatureStage:
    """Reads one user's online features off the event loop. Reads get threads of their own: reads stuck on a
    dead store (e.g. an unreachable Redis with client retries) then cannot starve other work; past the deadline
    a read is abandoned and its thread finishes on its own."""

    def __init__(self, reader: UserFeatureReader) -> None:
        self.reader = reader
        self._reads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feast-read")

    async def read(self, user_id: str, timeout_s: float) -> common_pb2.UserFeatures | Degraded:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reads, self.reader.read, user_id)
        except Unavailable as exc:
            return Degraded("features", exc.message)

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)


class GrpcCandidateStage:
    def __init__(self, stub: candidate_pb2_grpc.CandidateServiceStub) -> None:
        self.stub = stub

    async def retrieve(self, request: candidate_pb2.RetrieveRequest, timeout_s: float) -> Candidates | Degraded:
        try:
            reply = await self.stub.Retrieve(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return _rpc_failure("candidate", exc)
        affinity = np.asarray(reply.affinity, dtype=np.float32)
        return Candidates(
            list(reply.item_ids),
            np.asarray(reply.scores, dtype=np.float32),
            list(reply.sources),
            reply.cold_start,
            affinity if len(affinity) == len(reply.item_ids) and len(affinity) else None,
        )


class GrpcRankingStage:
    def __init__(self, stub: ranking_pb2_grpc.RankingServiceStub) -> None:
        self.stub = stub

    async def rank(self, request: ranking_pb2.RankRequest, timeout_s: float) -> np.ndarray | Degraded:
        try:
            reply = await self.stub.Rank(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return _rpc_failure("ranking", exc)
        return checked_scores(reply, len(request.item_ids))


class GrpcRerankStage:
    def __init__(self, stub: rerank_pb2_grpc.RerankServiceStub) -> None:
        self.stub = stub

    async def rerank(self, request: rerank_pb2.RerankRequest, timeout_s: float) -> Picks | Degraded:
        try:
            reply = await self.stub.Rerank(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return _rpc_failure("rerank", exc)
        return checked_picks(reply, request.count, len(request.item_ids))


def checked_scores(reply: ranking_pb2.RankResponse, n: int) -> np.ndarray | Degraded:
    """The ranking scores when there is one per item asked about."""
    scores = np.asarray(reply.scores, dtype=np.float32)
    if len(scores) != n:
        log.error("ranking returned %d scores for %d items", len(scores), n)  # a broken contract, not an outage
        return Degraded("ranking", f"ranking returned {len(scores)} scores for {n} items")
    return scores


def checked_picks(reply: rerank_pb2.RerankResponse, count: int, n: int) -> Picks | Degraded:
    """The rerank answer when it has `count` positions, all among the `n` candidates."""
    picks = np.asarray(reply.indices, dtype=np.int64)
    if len(picks) == count and (picks >= 0).all() and (picks < n).all():
        return Picks(picks, np.asarray(reply.scores, dtype=np.float32), list(reply.reasons) or [""] * count)
    log.error("rerank returned %d valid positions for count %d", len(picks), count)  # a broken contract
    return Degraded("rerank", f"rerank returned {len(picks)} valid positions for count {count}")
