"""Reasons shown for a recommendation when nothing more specific applies: one per candidate source."""

from __future__ import annotations

from recsys.common.v1 import common_pb2

_BY_SOURCE: dict[int, str] = {
    common_pb2.CANDIDATE_SOURCE_POPULAR: "Popular with viewers right now",
    common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS: "Similar to what you just watched",
    common_pb2.CANDIDATE_SOURCE_EMBEDDING: "Matches your taste profile",
    common_pb2.CANDIDATE_SOURCE_BATCH: "Picked for you",
    common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR: "Popular with people like you",
    common_pb2.CANDIDATE_SOURCE_TRENDING: "Trending now",
    common_pb2.CANDIDATE_SOURCE_FRESH: "New in the catalogue",
    common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY: "Often watched with titles you watched",
}


def source_reason(source: int) -> str:
    return _BY_SOURCE.get(source, "Recommended for you")
