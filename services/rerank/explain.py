"""Reasons a person understands, per recommended item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.common.v1 import common_pb2
from services.common.reasons import source_reason

#: Below this cosine similarity a history item is too weak a reason for "because you watched".
MIN_SIMILARITY = 0.25


def reasons(
    picked: np.ndarray,
    picked_embeddings: np.ndarray,
    sources: Sequence[int],
    history_embeddings: np.ndarray,
    history_titles: Sequence[str],
) -> list[str]:
    """One reason per picked item: the most similar history item when it is similar enough, otherwise the
    candidate source. Embeddings are L2-normalised; history rows align with history_titles."""
    best: np.ndarray | None = None
    best_sim: np.ndarray | None = None
    if len(history_titles):
        sims = picked_embeddings @ history_embeddings.T  # (k, h)
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(picked)), best]
    out = []
    for j, position in enumerate(picked):
        if best is not None and best_sim is not None and best_sim[j] >= MIN_SIMILARITY:
            out.append(f"Because you watched {history_titles[int(best[j])]}")
        else:
            source = sources[position] if position < len(sources) else common_pb2.CANDIDATE_SOURCE_UNSPECIFIED
            out.append(source_reason(source))
    return out


PINNED_REASON = "Featured"
EXPLORATION_REASON = "Something different: a less-known title"
