"""Recommend: features -> candidates -> ranking -> rerank, each stage with a deadline.

Degradation is decided here and reported in the response: features unreachable -> default (cold)
features; candidate stage down -> the user's precomputed list (training/batch_recommend.py, read with the user's
features), then the bundle's popular list, with the same filters and exclusions; ranking
down -> retrieval order; rerank down -> ranking order. Bad requests fail fast with INVALID_ARGUMENT before any
stage is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
from opentelemetry import trace

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.catalogue import Catalogue
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.reasons import source_reason
from services.common.retrieval_data import FallbackData, check_genres, resolve_rows
from services.common.telemetry import metrics, tracer
from services.common.validation import check_count, check_fraction, check_id, check_ids
from services.gateway.settings import GatewaySettings
from services.gateway.user_features import UserFeatureReader

log = logging.getLogger(__name__)
TRACER = tracer(__name__)
#: What each stage falls back to when it is down (the `fallback` attribute of recsys.fallbacks), in request
#: order: the budget reserves time for the stages after each one.
FALLBACKS = {
    "features": "default_features",
    "candidate": "batch_or_popular",
    "ranking": "retrieval_order",
    "rerank": "ranking_order",
}

MAX_EXCLUDED = 1000


@dataclass(frozen=True)
class Stages:
    candidate: candidate_pb2_grpc.CandidateServiceStub
    ranking: ranking_pb2_grpc.RankingServiceStub
    rerank: rerank_pb2_grpc.RerankServiceStub


@dataclass
class _Candidates:
    item_ids: list[str]
    retrieval: np.ndarray
    sources: list[common_pb2.CandidateSource]
    cold_start: bool
    affinity: np.ndarray | None = None  # the candidate stage's item-to-item affinity, parallel to item_ids


class NoBudgetLeft(Unavailable):
    """A stage was skipped: the request's budget had no time left for it."""


class Budget:
    """What is left of one Recommend's latency budget. A stage's deadline is the smaller of its own and what is
    left, less a reserve for each stage after it, so one slow stage cannot spend the time the others need."""

    #: Below this a call cannot succeed; the stage is skipped and degraded instead of being called.
    MIN_STAGE_S = 0.002

    def __init__(self, total_s: float, reserve_s: float) -> None:
        self.total_s = total_s
        self.reserve_s = reserve_s
        self.ends_at = time.monotonic() + total_s

    def stage_timeout_s(self, stage: str, stage_timeout_ms: int) -> float:
        """The deadline of `stage`'s call (a key of FALLBACKS, in request order); raises NoBudgetLeft when too
        little time is left to make it."""
        later_stages = len(FALLBACKS) - 1 - list(FALLBACKS).index(stage)
        left = self.ends_at - time.monotonic() - self.reserve_s * (later_stages + 1)
        timeout = min(stage_timeout_ms / 1000, left)
        if timeout < self.MIN_STAGE_S:
            raise NoBudgetLeft(f"no time left in the request's {self.total_s * 1000:.0f} ms budget")
        return timeout


def _failure(exc: grpc.aio.AioRpcError | NoBudgetLeft) -> str:
    """Why a stage call failed or was skipped, for the log."""
    if isinstance(exc, NoBudgetLeft):
        return f"skipped: {exc.message}"
    return f"{exc.code().name} {exc.details()}"


class RecommendPipeline:
    def __init__(
        self,
        settings: GatewaySettings,
        stages: Stages,
        features: UserFeatureReader,
        fallback: FallbackData,
        catalogue: Catalogue,
        bundle_version: str,
    ) -> None:
        self.settings = settings
        self.stages = stages
        self.features = features
        # Feature reads get threads of their own: reads stuck on a dead store then cannot starve other work.
        self._feature_reads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feast-read")
        self.fallback = fallback
        self.catalogue = catalogue
        self.bundle_version = bundle_version

    def close(self) -> None:
        self._feature_reads.shutdown(wait=False, cancel_futures=True)

    # -- Recommend -------------------------------------------------------------------------------------

    def budget(self, caller_timeout_s: float | None) -> Budget:
        """The request's budget: `request_budget_ms`, or the caller's deadline when that is sooner."""
        s = self.settings
        total = s.request_budget_ms / 1000
        if caller_timeout_s is not None:
            total = min(total, caller_timeout_s)
        return Budget(total, s.stage_reserve_ms / 1000)

    async def read_features(self, user_id: str, budget: Budget) -> common_pb2.UserFeatures:
        """One user's online features, within `features_timeout_ms` (and the request's budget); raises
        Unavailable otherwise. A store that hangs (e.g. an unreachable Redis with client retries) must not hold
        the caller: past the deadline the read is abandoned (its thread finishes on its own)."""
        loop = asyncio.get_running_loop()
        timeout_s = budget.stage_timeout_s("features", self.settings.features_timeout_ms)
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._feature_reads, self.features.read, user_id), timeout_s
            )
        except TimeoutError as exc:
            raise Unavailable(f"no answer in {timeout_s * 1000:.0f} ms") from exc

    async def recommend(
        self, request: gateway_pb2.RecommendRequest, caller_timeout_s: float | None = None
    ) -> gateway_pb2.RecommendResponse:
        """`caller_timeout_s`: the time left before the caller's deadline (None: the caller set none)."""
        s = self.settings
        budget = self.budget(caller_timeout_s)
        user_id = check_id("user_id", request.user_id)
        count = check_count("count", request.count, s.max_count)
        exclude_ids = check_ids("exclude_item_ids", request.exclude_item_ids, MAX_EXCLUDED)
        diversity = (
            check_fraction("diversity", request.diversity) if request.HasField("diversity") else s.default_diversity
        )
        if request.HasField("graph_weight"):
            check_fraction("graph_weight", request.graph_weight)
        if request.HasField("affinity_weight"):
            check_fraction("affinity_weight", request.affinity_weight)
        if request.diversity_method not in common_pb2.DiversityMethod.values():
            raise InvalidArgument(f"diversity_method {request.diversity_method} is not a known method")
        check_genres(self.catalogue, [*request.filter.include_genres, *request.filter.exclude_genres])
        context = common_pb2.RequestContext()
        context.CopyFrom(request.context)
        if not context.HasField("request_time"):
            context.request_time.GetCurrentTime()
        degraded: list[common_pb2.Stage] = []

        with self._stage("features", degraded, common_pb2.STAGE_FEATURES):
            try:
                with TRACER.start_as_current_span("feast.read_user_features") as span:
                    user = await self.read_features(user_id, budget)
                    span.set_attribute("recsys.user.history_length", len(user.recent_item_ids))
            except Unavailable as exc:
                log.warning("features degraded: %s", exc.message)
                user = common_pb2.UserFeatures(user_id=user_id)
                degraded.append(common_pb2.STAGE_FEATURES)

        batch_ids = list(user.batch_item_ids)
        del user.batch_item_ids[:]  # the gateway's fallback only; the stages do not need it
        with self._stage("candidate", degraded, common_pb2.STAGE_CANDIDATE):
            cands = await self._candidates(request, user, context, exclude_ids, degraded, batch_ids, budget)
        span = trace.get_current_span()
        span.set_attribute("recsys.budget_ms", round(budget.total_s * 1000, 1))
        span.set_attribute("recsys.bundle_version", self.bundle_version)
        span.set_attribute("recsys.candidates.count", len(cands.item_ids))
        for source, n in Counter(cands.sources).items():
            name = common_pb2.CandidateSource.Name(source).removeprefix("CANDIDATE_SOURCE_").lower()
            span.set_attribute(f"recsys.candidates.{name}", n)
        if not cands.item_ids:
            return self._response([], degraded, cands.cold_start)
        ids = np.asarray(cands.item_ids)

        with self._stage("ranking", degraded, common_pb2.STAGE_RANKING):
            ranking = await self._rank(user, context, cands.item_ids, degraded, budget)
        if ranking is None:
            order = np.arange(min(len(ids), s.ranked_count))
            relevance = cands.retrieval
            ranking = np.zeros(len(ids), dtype=np.float32)
        else:
            order = np.argsort(-ranking, kind="stable")[: s.ranked_count]
            relevance = ranking

        with self._stage("rerank", degraded, common_pb2.STAGE_RERANK):
            picks, final, reasons = await self._rerank(
                user,
                ids[order],
                relevance[order],
                cands.affinity[order] if cands.affinity is not None else None,
                [cands.sources[i] for i in order],
                count,
                diversity,
                request,
                degraded,
                budget,
            )
        chosen = order[picks]
        items = []
        for rank, pos in enumerate(chosen.tolist()):
            item_id = cands.item_ids[pos]
            row = self.fallback.item_pos.get(item_id)
            items.append(
                gateway_pb2.RecommendedItem(
                    item_id=item_id,
                    score=float(final[rank]),
                    stage_scores=gateway_pb2.StageScores(
                        retrieval=float(cands.retrieval[pos]),
                        ranking=float(ranking[pos]),
                        rerank=float(final[rank]),
                    ),
                    source=cands.sources[pos],
                    reason=reasons[rank] if request.explain else "",
                    info=self._info(row),
                )
            )
        return self._response(items, degraded, cands.cold_start)

    @contextlib.contextmanager
    def _stage(self, name: str, degraded: list[common_pb2.Stage], stage: int) -> Iterator[None]:
        """Times one stage into the latency histogram, with whether it degraded (and counts the fallback)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            outcome = "degraded" if stage in degraded else "ok"
            m = metrics()
            m.stage_latency_ms.record((time.perf_counter() - started) * 1000, {"stage": name, "outcome": outcome})
            if outcome == "degraded":
                m.fallbacks.add(1, {"stage": name, "fallback": FALLBACKS[name]})

    def _response(
        self, items: list[gateway_pb2.RecommendedItem], degraded: list[common_pb2.Stage], cold: bool
    ) -> gateway_pb2.RecommendResponse:
        request_id = uuid.uuid4().hex
        span = trace.get_current_span()
        span.set_attribute("recsys.request_id", request_id)  # joins a response (and its impressions) to its trace
        span.set_attribute("recsys.items", len(items))
        span.set_attribute("recsys.cold_start", cold)
        span.set_attribute(
            "recsys.degraded_stages", [common_pb2.Stage.Name(d).removeprefix("STAGE_").lower() for d in degraded]
        )
        return gateway_pb2.RecommendResponse(
            items=items,
            bundle_version=self.bundle_version,
            request_id=request_id,
            degraded_stages=degraded,
            cold_start=cold,
        )

    def _info(self, row: int | None) -> common_pb2.ItemInfo:
        if row is None:
            return common_pb2.ItemInfo()
        c = self.catalogue
        return common_pb2.ItemInfo(title=c.titles[row], genres=c.genres[row], year=int(c.years[row]))

    async def _candidates(
        self,
        request: gateway_pb2.RecommendRequest,
        user: common_pb2.UserFeatures,
        context: common_pb2.RequestContext,
        exclude_ids: list[str],
        degraded: list[common_pb2.Stage],
        batch_ids: list[str],
        budget: Budget,
    ) -> _Candidates:
        s = self.settings
        try:
            timeout_s = budget.stage_timeout_s("candidate", s.candidate_timeout_ms)
            reply = await self.stages.candidate.Retrieve(
                candidate_pb2.RetrieveRequest(
                    user_id=user.user_id,
                    user_features=user,  # demographics for the query tower
                    recent_item_ids=user.recent_item_ids,
                    context=context,
                    filter=request.filter,
                    exclude_item_ids=exclude_ids,
                    count=s.candidate_count,
                ),
                timeout=timeout_s,
            )
            affinity = np.asarray(reply.affinity, dtype=np.float32)
            return _Candidates(
                list(reply.item_ids),
                np.asarray(reply.scores, dtype=np.float32),
                list(reply.sources),
                reply.cold_start,
                affinity if len(affinity) == len(reply.item_ids) and len(affinity) else None,
            )
        except (grpc.aio.AioRpcError, NoBudgetLeft) as exc:
            log.warning("candidate stage degraded: %s", _failure(exc))
            degraded.append(common_pb2.STAGE_CANDIDATE)
        fb = self.fallback
        allowed, _ = fb.candidate_mask(
            self.catalogue,
            user.user_id,
            user.recent_item_ids,
            exclude_ids,
            request.filter.include_genres,
            request.filter.exclude_genres,
        )
        # The user's precomputed list first (still filtered as a live answer would be), popular items after it.
        batch = resolve_rows(fb.item_pos, batch_ids)  # ids gone from the catalogue drop out
        batch = batch[allowed[batch]][: s.candidate_count]
        allowed[batch] = False
        rows, scores = fb.popular.top(allowed, s.candidate_count - len(batch))
        batch_scores = np.linspace(1.0, 0.5, len(batch), dtype=np.float32)  # order only: best first
        return _Candidates(
            [*fb.item_ids[batch].tolist(), *fb.item_ids[rows].tolist()],
            np.concatenate([batch_scores, np.asarray(scores, dtype=np.float32) * 0.5]),
            [common_pb2.CANDIDATE_SOURCE_BATCH] * len(batch) + [common_pb2.CANDIDATE_SOURCE_POPULAR] * len(rows),
            cold_start=False,
        )

    async def _rank(
        self,
        user: common_pb2.UserFeatures,
        context: common_pb2.RequestContext,
        item_ids: list[str],
        degraded: list[common_pb2.Stage],
        budget: Budget,
    ) -> np.ndarray | None:
        try:
            reply = await self.stages.ranking.Rank(
                ranking_pb2.RankRequest(user=user, context=context, item_ids=item_ids),
                timeout=budget.stage_timeout_s("ranking", self.settings.ranking_timeout_ms),
            )
        except (grpc.aio.AioRpcError, NoBudgetLeft) as exc:
            log.warning("ranking stage degraded: %s", _failure(exc))
            degraded.append(common_pb2.STAGE_RANKING)
            return None
        scores = np.asarray(reply.scores, dtype=np.float32)
        if len(scores) != len(item_ids):
            log.error("ranking returned %d scores for %d items", len(scores), len(item_ids))
            degraded.append(common_pb2.STAGE_RANKING)
            return None
        return scores

    async def _rerank(
        self,
        user: common_pb2.UserFeatures,
        item_ids: np.ndarray,
        relevance: np.ndarray,
        affinity: np.ndarray | None,
        sources: list[common_pb2.CandidateSource],
        count: int,
        diversity: float,
        request: gateway_pb2.RecommendRequest,
        degraded: list[common_pb2.Stage],
        budget: Budget,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        count = min(count, len(item_ids))
        try:
            timeout_s = budget.stage_timeout_s("rerank", self.settings.rerank_timeout_ms)
            reply = await self.stages.rerank.Rerank(
                rerank_pb2.RerankRequest(
                    user_id=user.user_id,
                    item_ids=item_ids.tolist(),
                    scores=relevance.tolist(),
                    count=count,
                    diversity=diversity,
                    explain=request.explain,
                    history_item_ids=user.recent_item_ids,
                    sources=sources,
                    diversity_method=request.diversity_method,
                    graph_weight=request.graph_weight if request.HasField("graph_weight") else None,
                    affinity=affinity.tolist() if affinity is not None else [],
                    affinity_weight=request.affinity_weight if request.HasField("affinity_weight") else None,
                ),
                timeout=timeout_s,
            )
            picks = np.asarray(reply.indices, dtype=np.int64)
            if len(picks) == count and (picks >= 0).all() and (picks < len(item_ids)).all():
                return picks, np.asarray(reply.scores, dtype=np.float32), list(reply.reasons) or [""] * count
            log.error("rerank returned %d valid positions for count %d", len(picks), count)
        except (grpc.aio.AioRpcError, NoBudgetLeft) as exc:
            log.warning("rerank stage degraded: %s", _failure(exc))
        degraded.append(common_pb2.STAGE_RERANK)
        picks = np.arange(count)
        return picks, relevance[:count].astype(np.float32), [source_reason(sources[i]) for i in picks]

    # -- SimilarItems ----------------------------------------------------------------------------------

    async def similar_items(self, request: gateway_pb2.SimilarItemsRequest) -> gateway_pb2.SimilarItemsResponse:
        item_id = check_id("item_id", request.item_id)
        count = check_count("count", request.count, self.settings.max_count)
        if item_id not in self.fallback.item_pos:
            raise NotFound(f"item {item_id!r} is not in the catalogue")
        try:
            reply = await self.stages.candidate.SimilarItems(
                candidate_pb2.SimilarItemsRequest(item_id=item_id, count=count),
                timeout=self.settings.candidate_timeout_ms / 1000,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or f"item {item_id!r} is not in the catalogue") from exc
            raise Unavailable(f"similar items are unavailable: the candidate stage answered {exc.code().name}") from exc
        return gateway_pb2.SimilarItemsResponse(
            items=[
                gateway_pb2.SimilarItem(item_id=i, score=score, info=self._info(self.fallback.item_pos.get(i)))
                for i, score in zip(reply.item_ids, reply.scores, strict=True)
            ],
            bundle_version=reply.bundle_version,
        )
