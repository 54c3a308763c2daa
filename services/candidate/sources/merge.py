"""Merging candidate sources: duplicates removed, quotas kept, provenance carried."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from services.candidate.sources.base import SourceList


def _targets(quotas: Sequence[float], count: int) -> list[int]:
    """Integer shares of `count` proportional to `quotas` (largest remainder). Plain Python: a handful of
    sources, where numpy's per-call cost would dominate."""
    total = sum(quotas)
    if total <= 0:
        return [0] * len(quotas)
    exact = [q / total * count for q in quotas]
    out = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(quotas)), key=lambda i: out[i] - exact[i])  # stable: ties keep list order
    for i in by_remainder[: count - sum(out)]:
        out[i] += 1
    return out


def merge(lists: Sequence[SourceList], count: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Up to `count` distinct rows (of 0..n_rows-1): each source first takes its quota (in the order given,
    which breaks ties between sources proposing the same item), then the sources in that order fill what
    others left empty. The result interleaves the sources evenly so that any prefix keeps their proportions.
    Each list must hold distinct rows."""
    lists = [s for s in lists if len(s.rows)]
    if not lists:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), []
    taken = np.zeros(n_rows, dtype=bool)
    empty = np.empty(0, dtype=np.int64)
    picked = [empty] * len(lists)  # positions in each list that made the answer
    picked_rows = [empty] * len(lists)
    total = 0
    targets = _targets([max(s.quota, 0.0) for s in lists], count)
    for i, s in enumerate(lists):
        room = min(targets[i], count - total)
        if room > 0:
            pos = np.flatnonzero(~taken[s.rows])[:room]
            picked[i], picked_rows[i] = pos, s.rows[pos]
            taken[picked_rows[i]] = True
            total += len(pos)
    for i, s in enumerate(lists):
        if total >= count:
            break
        pos = np.flatnonzero(~taken[s.rows])[: count - total]  # what this list already gave is taken too
        if len(pos):
            taken[s.rows[pos]] = True
            picked[i] = np.sort(np.concatenate([picked[i], pos]))
            picked_rows[i] = s.rows[picked[i]]
            total += len(pos)
    sizes = np.array([len(p) for p in picked])
    # Interleave: the j-th of a source's n picks sits at (j + 0.5) / n; the source's place breaks ties.
    ends = np.cumsum(sizes)
    within = np.arange(ends[-1]) - np.repeat(ends - sizes, sizes)
    key = (within + 0.5) / np.repeat(np.maximum(sizes, 1), sizes) + np.repeat(np.arange(len(sizes)) * 1e-9, sizes)
    rows = np.concatenate(picked_rows).astype(np.int64, copy=False)
    sources = np.repeat(np.array([s.source for s in lists], dtype=np.int64), sizes)
    order = np.argsort(key, kind="stable")
    # Source scores are not comparable across sources; the answer's score is its merged position, in (0, 1]
    # and non-increasing, so consumers that sort by score (the gateway's ranking-down fallback) keep the mix.
    return rows[order], (1.0 - key[order]).astype(np.float32), sources[order].tolist()


def first_occurrences(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rows` (and their scores) without repeats, keeping each row's first place."""
    _, first = np.unique(rows, return_index=True)
    first.sort()
    return rows[first], scores[first]
