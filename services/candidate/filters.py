"""The rows one request may return: its genre filter (cached per live snapshot) minus the user's seen items,
the recent items and the excluded ones."""

from __future__ import annotations

import numpy as np

from services.candidate.live import FilterKey, FilterMasks, LiveItems
from services.candidate.query import RetrievalQuery
from services.candidate.rows import ItemRows
from services.common.catalogue import Catalogue
from services.common.retrieval_data import SeenItems, check_genres


class RequestFilters:
    def __init__(self, catalogue: Catalogue, seen: SeenItems, rows: ItemRows) -> None:
        self.catalogue = catalogue
        self.seen = seen
        self.rows = rows

    def masks(self, query: RetrievalQuery, live: LiveItems, recent_rows: np.ndarray) -> FilterMasks:
        """This request's allowed rows: the cached genre filter minus seen, recent and excluded items."""
        check_genres(self.catalogue, [*query.include_genres, *query.exclude_genres])
        key = (tuple(sorted(set(query.include_genres))), tuple(sorted(set(query.exclude_genres))))
        base = live.cached_masks(key, lambda k: self._genre_masks(k, live))
        main, delta = base.main.copy(), base.delta.copy()
        n = self.rows.n
        seen = self.seen.rows(query.user_id)
        if live.delta_pos and len(seen):
            # A seen item whose content was replaced at runtime is still seen under its new row.
            replaced = (live.delta_pos.get(self.rows.id_list[r]) for r in seen[live.main_gone[seen]].tolist())
            seen = np.concatenate([seen, np.fromiter((n + d for d in replaced if d is not None), np.int64)])
        excluded = np.concatenate([seen, recent_rows, self.rows.rows_of(query.exclude_item_ids, live)])
        main[excluded[excluded < n]] = False
        delta[excluded[excluded >= n] - n] = False
        return FilterMasks(main, delta)

    def _genre_masks(self, key: FilterKey, live: LiveItems) -> FilterMasks:
        include, exclude = key
        c = self.catalogue
        main = ~live.main_gone
        delta = live.delta_alive.copy()
        if include:
            bits = c.genre_bits(include)
            main &= (c.genre_mask & bits) != 0
            delta &= (live.delta_genre_mask & bits) != 0
        if exclude:
            bits = c.genre_bits(exclude)
            main &= (c.genre_mask & bits) == 0
            delta &= (live.delta_genre_mask & bits) == 0
        return FilterMasks(main, delta)

    def all_live_but(self, row: int, live: LiveItems) -> FilterMasks:
        """Every live row except `row` (the item whose similar items are asked for)."""
        masks = FilterMasks(~live.main_gone, live.delta_alive.copy())
        if row < self.rows.n:
            masks.main[row] = False
        else:
            masks.delta[row - self.rows.n] = False
        return masks
