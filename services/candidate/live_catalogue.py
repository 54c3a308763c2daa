"""The live catalogue of one retriever: the current `LiveItems` snapshot, and the admin changes that each build
a new one and swap it in (one change at a time; searches never wait)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from services.candidate.live import ItemContent, LiveItems
from services.candidate.rows import ItemRows
from services.candidate.towers import ItemTower
from services.common.catalogue import Catalogue


class LiveCatalogue:
    def __init__(
        self, version: str, dim: int, rows: ItemRows, catalogue: Catalogue, item_tower: ItemTower | None
    ) -> None:
        self.version = version
        self.dim = dim
        self.rows = rows
        self.catalogue = catalogue
        self.item_tower = item_tower
        self.current = LiveItems.empty(rows.n, dim)
        self._lock = threading.Lock()

    def embed(self, items: Sequence[ItemContent]) -> np.ndarray:
        """Vectors of `items`: given embeddings as they are, the rest from the item tower."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        need = [i for i, item in enumerate(items) if not item.embedding]
        for i, item in enumerate(items):
            if item.embedding:
                out[i] = np.asarray(item.embedding, dtype=np.float32)
        if need:
            if self.item_tower is None:
                raise ValueError(f"bundle {self.version} has no item tower: give each item its embedding")
            chosen = [items[i] for i in need]
            # A trained item keeps its id embedding (row + 1); a new one is embedded from content alone (0).
            ids = [self.rows.item_pos.get(item.item_id, -1) + 1 for item in chosen]
            out[need] = self.item_tower.embed(ids, [c.title for c in chosen], [c.year for c in chosen],
                                              [list(c.genres) for c in chosen])  # fmt: skip
        return out

    def upsert(self, items: Sequence[ItemContent]) -> tuple[int, int]:
        """Makes `items` live with new content and vectors; (added, updated)."""
        vectors = self.embed(items)
        bits = np.array([self.catalogue.genre_bits(list(i.genres)) for i in items], dtype=np.uint64)
        with self._lock:
            live = self.current
            main_rows = [self.rows.item_pos.get(i.item_id) for i in items]
            updated = sum(self.rows.row_of(i.item_id, live) is not None for i in items)
            self.current = live.with_upserts(items, vectors, main_rows, bits)
        return len(items) - updated, updated

    def remove(self, item_ids: Sequence[str]) -> tuple[int, int]:
        """Takes `item_ids` out of every source; (removed, already removed)."""
        with self._lock:
            live = self.current
            present = [i for i in item_ids if self.rows.row_of(i, live) is not None]
            main_rows = [self.rows.item_pos.get(i) for i in item_ids]
            self.current = live.with_removals(list(item_ids), main_rows)
        return len(present), len(item_ids) - len(present)

    def knows(self, item_id: str) -> bool:
        """Whether the id was ever in this catalogue (bundle or runtime), removed or not."""
        live = self.current
        return item_id in self.rows.item_pos or item_id in live.delta_pos or item_id in live.removed
