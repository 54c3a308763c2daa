"""ITEM_NEIGHBOURS: item-to-item neighbours of the most recent items; the whole personal answer of a user with
fresh history but no query vector."""

from __future__ import annotations

import math

from services.candidate.search import ItemSearch
from services.candidate.sources.base import SOURCE_NEIGHBOURS, SourceList, SourceRequest
from services.candidate.sources.merge import first_occurrences


class NeighbourSource:
    def __init__(self, search: ItemSearch, quota: float, history_items: int) -> None:
        self.search = search
        self.quota = quota
        self.history_items = history_items  # recent items whose neighbours are fetched

    def propose(self, request: SourceRequest) -> SourceList | None:
        """Neighbours of each recent item, interleaved (the most recent item's best first)."""
        only_source = request.vector is None
        if not len(request.recent_rows) or (self.quota <= 0 and not only_source):
            return None
        rows = request.recent_rows[: self.history_items]
        count = request.count
        share = 1.0 if only_source else self.quota
        per_item = count if only_source else max(math.ceil(count * share / len(rows)) * 2, 10)
        found, scores = self.search.neighbours(rows, per_item, request.masks, request.live)
        flat_rows, flat_scores = found.T.reshape(-1), scores.T.reshape(-1)
        keep = flat_rows >= 0
        unique_rows, vals = first_occurrences(flat_rows[keep], flat_scores[keep])
        return SourceList(SOURCE_NEIGHBOURS, unique_rows, vals, share)
