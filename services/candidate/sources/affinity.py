"""HISTORY_AFFINITY: the allowed bundle items with the highest affinity with the user's whole history
(history_totals.py), best first."""

from __future__ import annotations

import math

import numpy as np

from artifacts.ann_index import top_k
from services.candidate.sources.base import SOURCE_AFFINITY, SourceList, SourceRequest


class AffinitySource:
    def __init__(self, quota: float, n: int) -> None:
        self.quota = quota
        self.n = n

    def propose(self, request: SourceRequest) -> SourceList | None:
        totals = request.totals
        if totals is None or self.quota <= 0:
            return None
        limit = min(math.ceil(request.count * self.quota) * 2, self.n)
        scores = np.where(request.masks.main, totals, -np.inf).astype(np.float32)
        best = top_k(scores, limit)
        best = best[np.isfinite(scores[best])]
        return SourceList(SOURCE_AFFINITY, best.astype(np.int64), scores[best], self.quota)
