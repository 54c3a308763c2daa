"""Maximal marginal relevance, vectorised: O(k * N * d) for k picks from N candidates of dimension d.

At each step the pick maximises (1 - lambda) * relevance - lambda * (max similarity to the items already
picked). Relevance is the ranking score min-max scaled over the candidates, so lambda means the same thing
whatever the ranker's score range. lambda = 0 keeps the ranking order exactly.
"""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, embeddings: np.ndarray, count: int, diversity: float) -> tuple[np.ndarray, np.ndarray]:
    """Picks `count` of the N candidates.

    relevance: (N,) scores; embeddings: (N, d) L2-normalised; returns (positions, objective values).
    Ties break towards the earlier candidate, so the result is deterministic.
    """
    n = len(relevance)
    count = min(count, n)
    if count <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.zeros(n)
    if diversity <= 0.0:
        order = np.argsort(-rel, kind="stable")[:count]
        return order, rel[order].astype(np.float32)
    # Redundancy counts only positive similarity (dissimilar items are not rewarded), which also keeps
    # the picked objective values non-increasing, so the final scores descend with the position.
    max_sim = np.zeros(n)
    available = np.ones(n, dtype=bool)
    picks = np.empty(count, dtype=np.int64)
    values = np.empty(count, dtype=np.float32)
    emb = np.asarray(embeddings, dtype=np.float64)
    for step in range(count):
        objective = np.where(available, (1.0 - diversity) * rel - diversity * max_sim, -np.inf)
        pick = int(np.argmax(objective))
        picks[step] = pick
        values[step] = objective[pick]
        available[pick] = False
        np.maximum(max_sim, emb @ emb[pick], out=max_sim)
    return picks, values
