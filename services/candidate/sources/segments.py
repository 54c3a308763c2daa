"""SEGMENT_POPULAR, else TRENDING: for a user with no history of their own (new to the model, nothing recent)
who can still be placed: known to the segments, or given a query vector (from demographics)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsys.common.v1 import common_pb2
from services.candidate.sources.base import (
    SOURCE_SEGMENT,
    SOURCE_TRENDING,
    SourceList,
    SourceRequest,
    first_allowed,
    rank_scores,
)
from services.candidate.sources.popular import Trending


@dataclass(frozen=True)
class Segments:
    user_pos: dict[str, int]
    user_segment: np.ndarray  # (n_users,)
    centroids: np.ndarray  # (k, dim)
    popular: np.ndarray  # (k, m) bundle item rows

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Segments:
        return cls(
            user_pos={str(u): i for i, u in enumerate(arrays["user_ids"].tolist())},
            user_segment=np.asarray(arrays["user_segment"], dtype=np.int64),
            centroids=np.asarray(arrays["centroids"], dtype=np.float32),
            popular=np.asarray(arrays["popular_by_segment"], dtype=np.int64),
        )

    def segment_of(self, user_id: str, vector: np.ndarray | None, assigned: int | None = None) -> int | None:
        """`assigned` (the Feast `segment` feature, already checked to be of this bundle) first, then the
        bundle's own assignment, then the centroid nearest to the query vector."""
        if assigned is not None and 0 <= assigned < len(self.centroids):
            return assigned
        pos = self.user_pos.get(user_id)
        if pos is not None:
            return int(self.user_segment[pos])
        if vector is not None and len(self.centroids) and vector.shape[-1] == self.centroids.shape[1]:
            return int(((self.centroids - vector) ** 2).sum(axis=1).argmin())
        return None


def assigned_segment(features: common_pb2.UserFeatures | None, version: str) -> int | None:
    """The Feast `segment` feature when bundle `version`'s k-means assigned it: a segment id means something
    only in that bundle."""
    if features is None or not features.HasField("segment") or features.segment_bundle_version != version:
        return None
    return int(features.segment)


class SegmentSource:
    def __init__(
        self, segments: Segments | None, trending: Trending | None, version: str, quota: float, n: int
    ) -> None:
        self.segments = segments
        self.trending = trending
        self.version = version
        self.quota = quota
        self.n = n

    def propose(self, request: SourceRequest) -> SourceList | None:
        if request.known or len(request.recent_rows) or self.quota <= 0:
            return None
        limit = math.ceil(request.count * self.quota) * 2
        allowed = request.masks.main
        if self.segments is not None:
            assigned = assigned_segment(request.query.user_features, self.version)
            segment = self.segments.segment_of(request.query.user_id, request.vector, assigned)
            if segment is not None:
                order = self.segments.popular[segment]
                order = order[(order >= 0) & (order < self.n)]
                rows = first_allowed(order, allowed, limit)
                return SourceList(SOURCE_SEGMENT, rows, rank_scores(len(rows)), self.quota)
        if self.trending is not None and request.vector is not None:
            return SourceList(SOURCE_TRENDING, *self.trending.first(allowed, limit), self.quota)
        return None
