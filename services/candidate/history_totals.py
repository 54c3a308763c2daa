"""Each user's item-to-item affinity with their whole history: the totals behind the HISTORY_AFFINITY source
and every candidate's `affinity`, with the bundle-history part cached per user."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from services.common.retrieval_data import SeenItems


class HistoryTotals:
    """Totals over one bundle's item_affinity weights (n x n). The bundle-history part is fixed for the bundle,
    so it is computed once per user (bounded; least recently used first out): a heavy user's totals cost
    ~0.5 ms to recompute."""

    def __init__(self, weights: np.ndarray, n: int, seen: SeenItems, cache_users: int) -> None:
        if weights.shape != (n, n):
            raise ValueError(f"item_affinity is {weights.shape}; the bundle has {n} items")
        self.weights = weights
        self.n = n
        self.seen = seen
        self.cache_users = cache_users
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._warm()

    def totals(self, user_id: str, recent_rows: np.ndarray) -> np.ndarray | None:
        """Every bundle item's affinity with the user's whole history (the bundle's training interactions plus
        the fresh recent items): sum over history items h of W[h, item]. None without history."""
        seen = self.seen.rows(user_id)
        fresh = recent_rows[recent_rows < self.n]
        if len(fresh) and len(seen):
            # np.setdiff1d sorts both sides (~70 us at MovieLens size); a scratch mask over the rows is ~5 us.
            in_seen = np.zeros(self.n, dtype=bool)
            in_seen[seen] = True
            fresh = fresh[~in_seen[fresh]]
        if len(fresh) > 1:
            fresh = np.unique(fresh)  # a repeated fresh item counts once, as it does in the bundle history
        if not len(seen) and not len(fresh):
            return None
        base = self._bundle_totals(user_id, seen) if len(seen) else None
        if not len(fresh):
            return base
        extra = self._sum_rows(fresh)
        return extra if base is None else base + extra

    def of_rows(self, totals: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """`totals` of each of `rows` (global rows); 0 for runtime items (the weights do not know them) and
        for users without history."""
        out = np.zeros(len(rows), dtype=np.float32)
        if totals is not None:
            main = rows < self.n
            out[main] = totals[rows[main]]
        return out

    def most_recent_user(self) -> str | None:
        """The user whose totals were cached or read last (a request for them leaves the cache as it is)."""
        with self._lock:
            return next(reversed(self._cache), None)

    def cached(self) -> dict[str, np.ndarray]:
        """The cached totals, least recently used first."""
        with self._lock:
            return dict(self._cache)

    def _warm(self) -> None:
        """Fills the cache at load for the users with the longest histories (as many as it holds), so a bundle's
        known users do not pay a miss on their first request (up to ~0.5 ms for a heavy user's history against
        every item). Computed as a miss computes them; ~0.3 s for MovieLens' 943 users."""
        if self.cache_users <= 0:
            return
        seen = self.seen
        lengths = np.diff(seen.indptr)
        users = sorted(seen.user_pos, key=lambda u: -int(lengths[seen.user_pos[u]]))[: self.cache_users]
        # Inserted lightest first: the least recently used end is evicted first, and those are the cheapest.
        for user in reversed(users):
            rows = seen.rows(user)
            if len(rows):
                self._bundle_totals(user, rows)

    def _bundle_totals(self, user_id: str, seen: np.ndarray) -> np.ndarray:
        with self._lock:
            totals = self._cache.get(user_id)
            if totals is not None:
                self._cache.move_to_end(user_id)
                return totals
        totals = self._sum_rows(seen)
        totals.flags.writeable = False  # shared between requests
        if self.cache_users > 0:
            with self._lock:
                self._cache[user_id] = totals
                while len(self._cache) > self.cache_users:
                    self._cache.popitem(last=False)
        return totals

    def _sum_rows(self, rows: np.ndarray) -> np.ndarray:
        """sum_r W[r, :]. Summing the rows reads |rows| x n floats; one matrix-vector product reads all n x n.
        Measured here at 1,682 items: 0.05 ms against 0.18 ms for 100 rows, and the product wins from about
        n/4 rows (heavy users). A 2-D fancy index (np.ix_) was 3 ms at 700."""
        if len(rows) * 4 <= self.n:
            totals: np.ndarray = self.weights[rows].sum(axis=0)
            return totals
        indicator = np.zeros(self.n, dtype=np.float32)
        indicator[rows] = 1.0
        return indicator @ self.weights
