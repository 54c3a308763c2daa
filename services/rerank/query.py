"""What one rerank call is asked, and what it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from recsys.common.v1 import common_pb2


class DiversityMethod(StrEnum):
    MMR = "mmr"
    DPP = "dpp"
    CALIBRATED = "calibrated"  # the list's genre mix follows the user's history (the strength is `diversity`)

    @property
    def proto(self) -> common_pb2.DiversityMethod:
        """The `common.v1.DiversityMethod` value of the same name."""
        value: common_pb2.DiversityMethod = getattr(common_pb2, f"DIVERSITY_METHOD_{self.name}")
        return value


@dataclass(frozen=True)
class RerankQuery:
    """One rerank: `count` of the candidates `item_ids` (with their ranking `scores`, parallel to them)."""

    item_ids: Sequence[str]
    scores: np.ndarray
    count: int
    sources: Sequence[int] = ()  # parallel to item_ids when given: the reason when nothing more specific applies
    affinity: np.ndarray | None = None  # the candidate stage's history affinity per candidate (None: not blended)
    diversity: float = 0.0  # 0 keeps the relevance order; the strength of `method`
    method: DiversityMethod = DiversityMethod.MMR
    explain: bool = False
    history_item_ids: Sequence[str] = ()  # the user's recent items: calibration target and "because you watched"
    user_id: str = ""  # for the graph affinity
    graph_weight: float = 0.0  # of the graph affinity against the ranking score
    affinity_weight: float = 0.0  # of `affinity` against the (graph-blended) relevance


@dataclass(frozen=True)
class Reranked:
    positions: np.ndarray  # into the query's candidates
    scores: np.ndarray
    reasons: list[str]
