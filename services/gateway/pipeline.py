"""Recommend: features -> candidates -> ranking -> rerank, each stage with a deadline from the request's budget.

Degradation is decided here and reported in the response: features unreachable -> default (cold) features;
candidate stage down -> the user's precomputed list, then the bundle's popular list (fallback.py); ranking
down -> retrieval order; rerank down -> ranking order. A stage that fails, does not answer within its deadline,
or has no time left in the budget (skipped, not called) is degraded alike. Bad requests fail fast with
INVALID_ARGUMENT before any stage is called (request.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from recsys.candidate.v1 import candidate_pb2
from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from recsys.ranking.v1 import ranking_pb2
from recsys.rerank.v1 import rerank_pb2
from services.common.catalogue import Catalogue
from services.common.reasons import source_reason
from services.common.retrieval_data import FallbackData
from services.common.telemetry import metrics, tracer
from services.gateway.budget import Budget, NoBudgetLeft
from services.gateway.fallback import fallback_candidates
from services.gateway.request import RecommendQuery, parse_recommend
from services.gateway.response import Answers
from services.gateway.settings import GatewaySettings
from services.gateway.stages import Candidates, Degraded, Picks, Stages

log = logging.getLogger(__name__)
TRACER = tracer(__name__)
T = TypeVar("T")

#: What each stage falls back to when it is down (the `fallback` attribute of recsys.fallbacks).
FALLBACKS = {
    "features": "default_features",
    "candidate": "batch_or_popular",
    "ranking": "retrieval_order",
    "rerank": "ranking_order",
}
STAGE_VALUES = {
    "features": common_pb2.STAGE_FEATURES,
    "candidate": common_pb2.STAGE_CANDIDATE,
    "ranking": common_pb2.STAGE_RANKING,
    "rerank": common_pb2.STAGE_RERANK,
}


class _Run:
    """One Recommend's budget and the stages that degraded in it, in request order."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.degraded: list[common_pb2.Stage] = []

    def degrade(self, degraded: Degraded) -> None:
        log.warning("%s stage degraded: %s", degraded.stage, degraded.why)
        self.degraded.append(STAGE_VALUES[degraded.stage])

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Times one stage (its fallback included) into the latency histogram, with whether it degraded, and
        counts the fallback."""
        started = time.perf_counter()
        try:
            yield
        finally:
            outcome = "degraded" if STAGE_VALUES[stage] in self.degraded else "ok"
            m = metrics()
            m.stage_latency_ms.record((time.perf_counter() - started) * 1000, {"stage": stage, "outcome": outcome})
            if outcome == "degraded":
                m.fallbacks.add(1, {"stage": stage, "fallback": FALLBACKS[stage]})


@dataclass(frozen=True)
class _Shortlist:
    """The candidates passed to rerank and the scores they carry."""

    order: np.ndarray  # positions into the candidates, best first (at most ranked_count)
    relevance: np.ndarray  # per candidate: what rerank orders by (ranking scores, or retrieval when ranking is down)
    ranking: np.ndarray  # per candidate: the ranking score (0 when ranking is down)


class RecommendPipeline:
    def __init__(
        self, settings: GatewaySettings, stages: Stages, fallback: FallbackData, catalogue: Catalogue, version: str
    ) -> None:
        self.settings = settings
        self.stages = stages
        self.fallback = fallback
        self.catalogue = catalogue
        self.bundle_version = version
        self.answers = Answers(catalogue, fallback.item_pos, version)

    def budget(self, caller_timeout_s: float | None) -> Budget:
        """The request's budget: `request_budget_ms`, or the caller's deadline when that is sooner."""
        return Budget.for_request(self.settings.request_budget_ms, self.settings.stage_reserve_ms, caller_timeout_s)

    async def warm_up(self) -> Degraded | None:
        """One features read, bounded as a request's is (the SDK's first read costs ~20 ms more than the next);
        why it failed, if it did."""
        user = await self._call(
            "features",
            self.settings.features_timeout_ms,
            _Run(self.budget(None)),
            lambda timeout_s: self.stages.features.read("", timeout_s),
        )
        return user if isinstance(user, Degraded) else None

    async def recommend(
        self, request: gateway_pb2.RecommendRequest, caller_timeout_s: float | None = None
    ) -> gateway_pb2.RecommendResponse:
        """`caller_timeout_s`: the time left before the caller's deadline (None: the caller set none)."""
        run = _Run(self.budget(caller_timeout_s))
        query = parse_recommend(request, self.settings.max_count, self.settings.default_diversity, self.catalogue)
        user = await self._features(query.user_id, run)
        batch_ids = list(user.batch_item_ids)
        del user.batch_item_ids[:]  # the gateway's fallback only; the stages do not need it
        cands = await self._candidates(query, user, batch_ids, run)
        self._trace_candidates(run.budget, cands)
        if not cands.item_ids:
            return self.answers.response([], run.degraded, cands.cold_start)
        shortlist = await self._shortlist(query, user, cands, run)
        picks = await self._rerank(query, user, cands, shortlist, run)
        chosen = shortlist.order[picks.positions]
        items = self.answers.items(cands, shortlist.ranking, chosen, picks, query.explain)
        return self.answers.response(items, run.degraded, cands.cold_start)

    async def _call(
        self, stage: str, timeout_ms: int, run: _Run, call: Callable[[float], Awaitable[T | Degraded]]
    ) -> T | Degraded:
        """`call(timeout_s)` within the stage's deadline; a stage with no time left is not called."""
        try:
            timeout_s = run.budget.stage_timeout_s(stage, timeout_ms)
        except NoBudgetLeft as exc:
            return Degraded(stage, f"skipped: {exc.message}")
        try:
            async with asyncio.timeout(timeout_s):
                return await call(timeout_s)
        except TimeoutError:
            return Degraded(stage, f"no answer in {timeout_s * 1000:.0f} ms")

    async def _features(self, user_id: str, run: _Run) -> common_pb2.UserFeatures:
        """The user's online features; default (cold) features when the store is down."""
        with run.timed("features"), TRACER.start_as_current_span("feast.read_user_features") as span:
            user = await self._call(
                "features",
                self.settings.features_timeout_ms,
                run,
                lambda timeout_s: self.stages.features.read(user_id, timeout_s),
            )
            if isinstance(user, Degraded):
                span.set_status(Status(StatusCode.ERROR, user.why))
                run.degrade(user)
                return common_pb2.UserFeatures(user_id=user_id)
            span.set_attribute("recsys.user.history_length", len(user.recent_item_ids))
            return user

    async def _candidates(
        self, query: RecommendQuery, user: common_pb2.UserFeatures, batch_ids: list[str], run: _Run
    ) -> Candidates:
        """The candidate stage's answer; the batch list and popular items (same filters) when it is down."""
        s = self.settings
        with run.timed("candidate"):
            request = candidate_pb2.RetrieveRequest(
                user_id=user.user_id,
                user_features=user,  # demographics for the query tower
                recent_item_ids=user.recent_item_ids,
                context=query.context,
                filter=query.filter,
                exclude_item_ids=query.exclude_ids,
                count=s.candidate_count,
            )
            found = await self._call(
                "candidate",
                s.candidate_timeout_ms,
                run,
                lambda timeout_s: self.stages.candidate.retrieve(request, timeout_s),
            )
            if isinstance(found, Degraded):
                run.degrade(found)
                return fallback_candidates(self.fallback, self.catalogue, request, batch_ids)
            return found

    def _trace_candidates(self, budget: Budget, cands: Candidates) -> None:
        span = trace.get_current_span()
        span.set_attribute("recsys.budget_ms", round(budget.total_s * 1000, 1))
        span.set_attribute("recsys.bundle_version", self.bundle_version)
        span.set_attribute("recsys.candidates.count", len(cands.item_ids))
        for source, n in Counter(cands.sources).items():
            name = common_pb2.CandidateSource.Name(source).removeprefix("CANDIDATE_SOURCE_").lower()
            span.set_attribute(f"recsys.candidates.{name}", n)

    async def _shortlist(
        self, query: RecommendQuery, user: common_pb2.UserFeatures, cands: Candidates, run: _Run
    ) -> _Shortlist:
        """The top `ranked_count` candidates by the ranking stage; in retrieval order when it is down."""
        with run.timed("ranking"):
            request = ranking_pb2.RankRequest(user=user, context=query.context, item_ids=cands.item_ids)
            scores = await self._call(
                "ranking",
                self.settings.ranking_timeout_ms,
                run,
                lambda timeout_s: self.stages.ranking.rank(request, timeout_s),
            )
            if isinstance(scores, Degraded):
                run.degrade(scores)
        ranked_count = self.settings.ranked_count
        if isinstance(scores, Degraded):
            order = np.arange(min(len(cands.item_ids), ranked_count))
            return _Shortlist(order, cands.retrieval, np.zeros(len(cands.item_ids), dtype=np.float32))
        return _Shortlist(np.argsort(-scores, kind="stable")[:ranked_count], scores, scores)

    async def _rerank(
        self, query: RecommendQuery, user: common_pb2.UserFeatures, cands: Candidates, shortlist: _Shortlist, run: _Run
    ) -> Picks:
        """The final list from the rerank stage (positions into the shortlist); the shortlist's order when it is
        down."""
        order = shortlist.order
        count = min(query.count, len(order))
        with run.timed("rerank"):
            sources = np.asarray(cands.sources, dtype=np.int64)[order].tolist()
            relevance = shortlist.relevance[order]
            request = rerank_pb2.RerankRequest(
                user_id=user.user_id,
                item_ids=np.asarray(cands.item_ids)[order].tolist(),
                scores=relevance.tolist(),
                count=count,
                diversity=query.diversity,
                explain=query.explain,
                history_item_ids=user.recent_item_ids,
                sources=sources,
                diversity_method=query.diversity_method,
                graph_weight=query.graph_weight,
                affinity=cands.affinity[order].tolist() if cands.affinity is not None else [],
                affinity_weight=query.affinity_weight,
            )
            picks = await self._call(
                "rerank",
                self.settings.rerank_timeout_ms,
                run,
                lambda timeout_s: self.stages.rerank.rerank(request, timeout_s),
            )
            if isinstance(picks, Degraded):
                run.degrade(picks)
                first = np.arange(count)
                return Picks(first, relevance[:count].astype(np.float32), [source_reason(s) for s in sources[:count]])
            return picks
