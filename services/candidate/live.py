"""Runtime catalogue changes on top of a bundle's immutable index, copy-on-write.

The bundle's items keep their rows 0..n-1 in the ANN index, which is never mutated (so searches take no
lock). Items added or changed at runtime live in a small "delta" segment with rows n, n+1, ... searched
exactly; a removed or superseded bundle row is masked out of every search. Each change builds a new
`LiveItems` and swaps one reference: a request reads one consistent snapshot from start to finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from artifacts.ann_index import RowFilter


@dataclass(frozen=True)
class ItemContent:
    """What an admin call says about one item."""

    item_id: str
    title: str
    genres: tuple[str, ...]
    year: int
    embedding: tuple[float, ...] = ()


FilterKey = tuple[tuple[str, ...], tuple[str, ...]]  # (include genres, exclude genres), sorted


@dataclass
class FilterMasks:
    main: np.ndarray  # bool over bundle rows
    delta: np.ndarray  # bool over delta rows

    @cached_property
    def filter(self) -> RowFilter:
        """The bundle-row mask as the index takes it (count and bitmap shared by the request's searches).
        Build it only once `main` is final."""
        return RowFilter(self.main)


@dataclass(frozen=True)
class LiveItems:
    n_main: int
    dim: int
    #: bundle rows that must not be returned (removed, or superseded by a delta row)
    main_gone: np.ndarray
    delta_ids: tuple[str, ...] = ()
    delta_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    delta_genre_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    delta_years: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    delta_titles: tuple[str, ...] = ()
    delta_genres: tuple[tuple[str, ...], ...] = ()
    delta_alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: item id -> delta row (global row = n_main + delta row) of the live version of a runtime item
    delta_pos: dict[str, int] = field(default_factory=dict)
    #: ids removed at runtime that are not back
    removed: frozenset[str] = frozenset()
    _cache: dict[FilterKey, FilterMasks] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def empty(cls, n_main: int, dim: int) -> LiveItems:
        return cls(
            n_main=n_main,
            dim=dim,
            main_gone=np.zeros(n_main, dtype=bool),
            delta_vectors=np.zeros((0, dim), dtype=np.float32),
        )

    @property
    def n_delta(self) -> int:
        return len(self.delta_ids)

    @property
    def size(self) -> int:
        """Items that can be returned now."""
        return int(self.n_main - np.count_nonzero(self.main_gone) + np.count_nonzero(self.delta_alive))

    def cached_masks(self, key: FilterKey, build: Callable[[FilterKey], FilterMasks]) -> FilterMasks:
        """The masks of one genre filter (live items only), built once per snapshot; callers copy them."""
        masks = self._cache.get(key)
        if masks is None:
            masks = build(key)
            with self._lock:
                if len(self._cache) >= 64:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = masks
        return masks

    def with_upserts(
        self, items: Sequence[ItemContent], vectors: np.ndarray, main_rows: Sequence[int | None], genre_bits: np.ndarray
    ) -> LiveItems:
        """A new snapshot with `items` (vectors aligned) live; `main_rows[i]` is the item's bundle row if any."""
        main_gone = self.main_gone.copy()
        alive = self.delta_alive.copy()
        delta_pos = dict(self.delta_pos)
        removed = set(self.removed)
        start = self.n_delta
        for i, item in enumerate(items):
            old = delta_pos.get(item.item_id)
            if old is not None:
                alive[old] = False
            row = main_rows[i]
            if row is not None:
                main_gone[row] = True
            delta_pos[item.item_id] = start + i
            removed.discard(item.item_id)
        return LiveItems(
            n_main=self.n_main,
            dim=self.dim,
            main_gone=main_gone,
            delta_ids=(*self.delta_ids, *(i.item_id for i in items)),
            delta_vectors=np.concatenate([self.delta_vectors, vectors.astype(np.float32)]),
            delta_genre_mask=np.concatenate([self.delta_genre_mask, genre_bits.astype(np.uint64)]),
            delta_years=np.concatenate([self.delta_years, np.array([i.year for i in items], dtype=np.int32)]),
            delta_titles=(*self.delta_titles, *(i.title for i in items)),
            delta_genres=(*self.delta_genres, *(tuple(i.genres) for i in items)),
            delta_alive=np.concatenate([alive, np.ones(len(items), dtype=bool)]),
            delta_pos=delta_pos,
            removed=frozenset(removed),
        )

    def with_removals(self, item_ids: Sequence[str], main_rows: Sequence[int | None]) -> LiveItems:
        main_gone = self.main_gone.copy()
        alive = self.delta_alive.copy()
        delta_pos = dict(self.delta_pos)
        for item_id, row in zip(item_ids, main_rows, strict=True):
            if row is not None:
                main_gone[row] = True
            old = delta_pos.pop(item_id, None)
            if old is not None:
                alive[old] = False
        return LiveItems(
            n_main=self.n_main,
            dim=self.dim,
            main_gone=main_gone,
            delta_ids=self.delta_ids,
            delta_vectors=self.delta_vectors,
            delta_genre_mask=self.delta_genre_mask,
            delta_years=self.delta_years,
            delta_titles=self.delta_titles,
            delta_genres=self.delta_genres,
            delta_alive=alive,
            delta_pos=delta_pos,
            removed=self.removed | frozenset(item_ids),
        )
