"""FRESH: items added at runtime (the latest first), then the newest releases; for users with a query vector."""

from __future__ import annotations

import math

import numpy as np

from services.candidate.sources.base import SOURCE_FRESH, SourceList, SourceRequest, first_allowed, rank_scores
from services.common.catalogue import Catalogue


def newest_first(catalogue: Catalogue, popularity: np.ndarray) -> np.ndarray:
    """Bundle rows with a known year, newest releases first, popularity breaking ties."""
    newest = np.lexsort((-popularity, -catalogue.years.astype(np.int64)))
    return newest[catalogue.years[newest] > 0]


class FreshSource:
    def __init__(self, newest: np.ndarray, quota: float, n: int) -> None:
        self.newest = newest
        self.quota = quota
        self.n = n

    def propose(self, request: SourceRequest) -> SourceList | None:
        if self.quota <= 0 or request.vector is None:
            return None
        limit = math.ceil(request.count * self.quota) + 1
        masks = request.masks
        runtime = np.flatnonzero(masks.delta)[::-1][:limit] + self.n
        newest = first_allowed(self.newest, masks.main, max(limit - len(runtime), 0))
        rows = np.concatenate([runtime, newest]).astype(np.int64)
        return SourceList(SOURCE_FRESH, rows, rank_scores(len(rows)), self.quota)
