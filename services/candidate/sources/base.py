"""What every candidate source takes (`SourceRequest`) and gives (`SourceList`), and the walks over ranked
orders they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.common.v1 import common_pb2
from services.candidate.live import FilterMasks, LiveItems
from services.candidate.query import AnnProbe, RetrievalQuery

SOURCE_EMBEDDING = common_pb2.CANDIDATE_SOURCE_EMBEDDING
SOURCE_NEIGHBOURS = common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS
SOURCE_POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR
SOURCE_SEGMENT = common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR
SOURCE_TRENDING = common_pb2.CANDIDATE_SOURCE_TRENDING
SOURCE_FRESH = common_pb2.CANDIDATE_SOURCE_FRESH
SOURCE_AFFINITY = common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY


@dataclass(frozen=True)
class SourceList:
    """One source's candidates, best first (global rows), their scores in that source, and its share."""

    source: int  # common_pb2.CandidateSource
    rows: np.ndarray
    scores: np.ndarray
    quota: float


@dataclass(frozen=True)
class SourceRequest:
    """One retrieval as every source sees it, worked out once per request: the live snapshot it reads from
    start to finish, the rows it may return and what is known of the user."""

    query: RetrievalQuery
    live: LiveItems
    masks: FilterMasks  # this request's allowed rows
    recent_rows: np.ndarray  # global rows of the live recent items
    vector: np.ndarray | None  # the user's query vector; None when there is nothing to personalise on
    known: bool  # a user of the bundle's training data
    totals: np.ndarray | None  # history affinity of every bundle item (history_totals.py), or None
    probe: Callable[[AnnProbe], None] | None = None  # receives the ANN query for the recall monitor

    @property
    def count(self) -> int:
        return self.query.count


class CandidateSource(Protocol):
    def propose(self, request: SourceRequest) -> SourceList | None:
        """This source's candidates for `request`; None when it has nothing to say to this request."""
        ...


def first_allowed(order: np.ndarray, allowed: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` entries of `order` that `allowed` lets through, reading only as much of a long order
    (a million items) as needed."""
    if limit <= 0:
        return order[:0]
    size = max(4 * limit, 1024)
    while True:
        head = order[:size]
        rows = head[allowed[head]]
        if len(rows) >= limit or size >= len(order):
            return rows[:limit]
        size *= 4


def rank_scores(n: int) -> np.ndarray:
    """Scores in (0, 1] that only say "best first", for lists without a native score."""
    return (1.0 / (1.0 + np.arange(n, dtype=np.float32) / max(n, 1))).astype(np.float32)
