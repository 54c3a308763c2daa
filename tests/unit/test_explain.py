"""Per-item explanations: the most similar history item when it is close enough, else the candidate source."""

from __future__ import annotations

import numpy as np

from recsys.common.v1 import common_pb2
from services.common.reasons import source_reason
from services.rerank.explain import MIN_SIMILARITY, reasons


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_a_close_history_item_is_the_reason_and_names_the_closest_one() -> None:
    history = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0])])
    picked = np.stack([_unit([0.1, 1, 0]), _unit([1, 0.2, 0])])
    out = reasons(np.array([0, 1]), picked, [common_pb2.CANDIDATE_SOURCE_EMBEDDING] * 2, history, ["Heat", "Fargo"])
    assert out == ["Because you watched Fargo", "Because you watched Heat"]


def test_without_a_close_history_item_each_source_gives_its_own_reason() -> None:
    sources = [
        common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR,
        common_pb2.CANDIDATE_SOURCE_TRENDING,
        common_pb2.CANDIDATE_SOURCE_FRESH,
        common_pb2.CANDIDATE_SOURCE_POPULAR,
    ]
    history = _unit([1, 0, 0])[None, :]
    # Orthogonal to the history item: similarity 0, below the threshold.
    picked = np.stack([_unit([0, 1, 0])] * len(sources))
    out = reasons(np.arange(len(sources)), picked, sources, history, ["Heat"])
    assert out == [
        "Popular with people like you",
        "Trending now",
        "New in the catalogue",
        "Popular with viewers right now",
    ]


def test_similarity_just_below_the_threshold_falls_back_to_the_source() -> None:
    below = MIN_SIMILARITY - 0.01
    picked = np.array([[below, np.sqrt(1 - below**2), 0.0]], dtype=np.float32)
    out = reasons(np.array([0]), picked, [common_pb2.CANDIDATE_SOURCE_TRENDING], _unit([1, 0, 0])[None, :], ["Heat"])
    assert out == ["Trending now"]


def test_no_history_and_unknown_sources_still_give_a_reason() -> None:
    picked = np.stack([_unit([1, 0, 0])] * 2)
    out = reasons(np.array([0, 1]), picked, [common_pb2.CANDIDATE_SOURCE_FRESH], np.zeros((0, 3), np.float32), [])
    # The second position has no source: the generic reason, never an empty string.
    assert out == ["New in the catalogue", source_reason(common_pb2.CANDIDATE_SOURCE_UNSPECIFIED)]
    assert all(out)
