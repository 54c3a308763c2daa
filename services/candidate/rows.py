"""Item ids <-> global rows: the bundle's items hold rows 0..n-1, runtime items rows n, n+1, ... (live.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.candidate.live import LiveItems


class ItemRows:
    """The bundle's item ids and rows, read against a live snapshot for runtime items and removals."""

    def __init__(self, item_ids: np.ndarray, item_pos: dict[str, int], n: int) -> None:
        self.n = n
        self.item_pos = item_pos  # bundle item id -> bundle row (the trained catalogue)
        self.id_list = [str(i) for i in item_ids.tolist()]
        self._id_array = np.asarray(self.id_list, dtype=object)  # rows -> the same str objects, vectorised

    def row_of(self, item_id: str, live: LiveItems) -> int | None:
        """The live global row of an item (bundle rows, then runtime rows from n); None when not live."""
        delta = live.delta_pos.get(item_id)
        if delta is not None:
            return self.n + delta
        if item_id in live.removed:
            return None
        row = self.item_pos.get(item_id)
        if row is None or live.main_gone[row]:
            return None
        return row

    def rows_of(self, item_ids: Sequence[str], live: LiveItems) -> np.ndarray:
        """The live global rows of `item_ids`, in order; ids that are not live are left out."""
        rows = (self.row_of(i, live) for i in item_ids)
        return np.fromiter((r for r in rows if r is not None), dtype=np.int64)

    def ids_of(self, rows: np.ndarray, live: LiveItems) -> list[str]:
        if not len(rows) or rows.max() < self.n:  # the usual case: bundle items only
            ids: list[str] = self._id_array[rows].tolist()
            return ids
        return [self.id_list[r] if r < self.n else live.delta_ids[r - self.n] for r in rows.tolist()]
