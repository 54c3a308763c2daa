"""POPULAR and TRENDING: what fills an answer the other sources leave short, and the whole answer for a
cold-start user."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.candidate.sources.base import SOURCE_POPULAR, SOURCE_TRENDING, SourceList, SourceRequest, first_allowed
from services.common.retrieval_data import PopularItems


@dataclass(frozen=True)
class Trending:
    """Bundle rows by recent popularity (all-time popularity breaking ties), scored relative to the top."""

    order: np.ndarray
    scores: np.ndarray  # float32 per bundle row

    @classmethod
    def from_counts(cls, recent: np.ndarray | None, popularity: np.ndarray, n: int) -> Trending | None:
        """None without recent counts for the bundle's items."""
        if recent is None or len(recent) != n or not np.any(recent > 0):
            return None
        order = np.lexsort((-np.asarray(popularity), -np.asarray(recent))).astype(np.int64)
        return cls(order, np.asarray(recent, dtype=np.float32) / max(float(np.max(recent)), 1.0))

    def first(self, allowed: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The `limit` most trending allowed rows and their scores."""
        rows = first_allowed(self.order, allowed, limit)
        return rows, self.scores[rows]


class PopularFillers:
    """Trending (with cold_start_source=trending), then popular, then runtime items. They take only what the
    other sources leave empty (quota 0)."""

    def __init__(self, popular: PopularItems, trending: Trending | None, n: int) -> None:
        self.popular = popular
        self.trending = trending
        self.n = n

    def propose(self, request: SourceRequest) -> list[SourceList]:
        masks, count = request.masks, request.count
        out = []
        if self.trending is not None:
            out.append(SourceList(SOURCE_TRENDING, *self.trending.first(masks.main, count), 0.0))
        pop = self.popular
        pop_rows = first_allowed(pop.order, masks.main, count)
        top = max(int(pop.popularity[pop.order[0]]), 1) if len(pop.order) else 1
        out.append(SourceList(SOURCE_POPULAR, pop_rows, (pop.popularity[pop_rows] / top).astype(np.float32), 0.0))
        if request.live.n_delta and len(pop_rows) < count:
            # Runtime items have no interactions yet: they come after every popular bundle item.
            extra = np.flatnonzero(masks.delta)[::-1] + self.n
            out.append(SourceList(SOURCE_POPULAR, extra, np.zeros(len(extra), dtype=np.float32), 0.0))
        return out
