"""Merging candidate sources: duplicates removed, quotas kept, provenance carried."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SourceList:
    """One source's candidates, best first (global rows), their scores in that source, and its share."""

    source: int  # common_pb2.CandidateSource
    rows: np.ndarray
    scores: np.ndarray
    quota: float


def _targets(quotas: np.ndarray, count: int) -> np.ndarray:
    """Integer shares of `count` proportional to `quotas` (largest remainder)."""
    total = quotas.sum()
    if total <= 0:
        return np.zeros(len(quotas), dtype=np.int64)
    exact = quotas / total * count
    out = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - out), kind="stable")[: count - int(out.sum())]:
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
    used = [np.zeros(len(s.rows), dtype=bool) for s in lists]
    have = [0] * len(lists)
    total = 0

    def take(i: int, limit: int) -> None:
        nonlocal total
        room = min(limit - have[i], count - total)
        if room <= 0:
            return
        rows = lists[i].rows
        pos = np.flatnonzero(~used[i] & ~taken[rows])[:room]
        used[i][pos] = True
        taken[rows[pos]] = True
        have[i] += len(pos)
        total += len(pos)

    targets = _targets(np.array([max(s.quota, 0.0) for s in lists], dtype=np.float64), count)
    for i in range(len(lists)):
        take(i, int(targets[i]))
    for i in range(len(lists)):
        if total >= count:
            break
        take(i, count)
    keys, rows, srcs = [], [], []
    for i, s in enumerate(lists):
        pos = np.flatnonzero(used[i])
        n = len(pos)
        keys.append((np.arange(n) + 0.5) / max(n, 1) + i * 1e-9)
        rows.append(np.asarray(s.rows, dtype=np.int64)[pos])
        srcs.append(np.full(n, s.source, dtype=np.int64))
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    # Source scores are not comparable across sources; the answer's score is its merged position, in (0, 1]
    # and non-increasing, so consumers that sort by score (the gateway's ranking-down fallback) keep the mix.
    return np.concatenate(rows)[order], (1.0 - key[order]).astype(np.float32), np.concatenate(srcs)[order].tolist()


def first_occurrences(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rows` (and their scores) without repeats, keeping each row's first place."""
    _, first = np.unique(rows, return_index=True)
    first.sort()
    return rows[first], scores[first]
