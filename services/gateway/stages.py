"""What the gateway asks of each stage, behind a small Protocol per stage.

A stage answers with its result or a `Degraded` (which stage, and why); it never raises for a stage failure, so
the pipeline decides every fallback in one place. Each call gets its deadline from the request's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.candidate.v1 import candidate_pb2
from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2
from recsys.rerank.v1 import rerank_pb2


@dataclass(frozen=True)
class Degraded:
    """A stage that failed, timed out or was skipped; the request goes on with that stage's fallback."""

    stage: str  # one of budget.STAGE_ORDER
    why: str  # for the log


@dataclass(frozen=True)
class Candidates:
    item_ids: list[str]
    retrieval: np.ndarray  # (N,) float32 retrieval scores
    sources: list[common_pb2.CandidateSource]
    cold_start: bool
    affinity: np.ndarray | None = None  # the candidate stage's item-to-item affinity, parallel to item_ids


@dataclass(frozen=True)
class Picks:
    """The rerank stage's answer: positions into its request's candidates, final scores and reasons."""

    positions: np.ndarray  # (count,) int64
    scores: np.ndarray  # (count,) float32
    reasons: list[str]


class FeatureStage(Protocol):
    async def read(self, user_id: str, timeout_s: float) -> common_pb2.UserFeatures | Degraded: ...


class CandidateStage(Protocol):
    async def retrieve(self, request: candidate_pb2.RetrieveRequest, timeout_s: float) -> Candidates | Degraded: ...


class RankingStage(Protocol):
    async def rank(self, request: ranking_pb2.RankRequest, timeout_s: float) -> np.ndarray | Degraded:
        """One score per item of the request."""
        ...


class RerankStage(Protocol):
    async def rerank(self, request: rerank_pb2.RerankRequest, timeout_s: float) -> Picks | Degraded:
        """`request.count` valid positions into `request.item_ids`."""
        ...


@dataclass(frozen=True)
class Stages:
    features: FeatureStage
    candidate: CandidateStage
    ranking: RankingStage
    rerank: RerankStage
