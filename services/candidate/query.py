"""What one retrieval asks (`RetrievalQuery`) and gets back (`Candidates`), and the ANN probe for the recall
monitor: plain data, no gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.common.v1 import common_pb2


@dataclass(frozen=True)
class RetrievalQuery:
    user_id: str
    recent_item_ids: Sequence[str]
    count: int
    include_genres: Sequence[str] = ()
    exclude_genres: Sequence[str] = ()
    exclude_item_ids: Sequence[str] = ()
    user_features: common_pb2.UserFeatures | None = None
    request_time: int | None = None  # seconds since the epoch
    device: int = 0  # common_pb2.DeviceType


@dataclass(frozen=True)
class Candidates:
    item_ids: list[str]
    scores: np.ndarray  # float32
    sources: list[common_pb2.CandidateSource]
    cold_start: bool
    affinity: np.ndarray | None = None  # float32, parallel to item_ids; None without item_affinity weights


@dataclass(frozen=True)
class AnnProbe:
    """What the recall monitor needs to answer one ANN query again, exactly."""

    query: np.ndarray
    allowed: np.ndarray  # bool over bundle rows (the request's own copy)
    rows: np.ndarray  # bundle rows the ANN returned, best first
    k: int
