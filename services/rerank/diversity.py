"""Diversity: maximal marginal relevance, a greedy DPP and genre calibration, all vectorised over the candidates.

MMR is O(k * N * d) for k picks from N candidates of dimension d. At each step the pick maximises
(1 - lambda) * relevance - lambda * (max similarity to the items already picked). Relevance is the ranking
score min-max scaled over the candidates, so lambda means the same thing whatever the ranker's score range.
Calibration (Steck, RecSys 2018) picks towards a target genre mix (the user's history) instead of away from
the items already picked. lambda = 0 keeps the ranking order exactly (every method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def mmr(
    relevance: np.ndarray,
    embeddings: np.ndarray,
    count: int,
    diversity: float,
    available: np.ndarray | None = None,
    on_pick: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Picks `count` of the N candidates.

    relevance: (N,) scores; embeddings: (N, d) L2-normalised; returns (positions, objective values).
    `available` (N,) bool, updated in place, says which candidates may still be picked; `on_pick(pick,
    available)` may clear more of it after each pick (category caps). Ties break towards the earlier
    candidate, so the result is deterministic.
    """
    rel, avail, count = _prepare(relevance, available, count)
    if count <= 0:
        return _EMPTY
    if diversity <= 0.0:
        return _by_relevance(rel, avail, count, on_pick)
    # Redundancy counts only positive similarity (dissimilar items are not rewarded), which also keeps
    # the picked objective values non-increasing, so the final scores descend with the position.
    max_sim = np.zeros(len(rel))
    picks = np.empty(count, dtype=np.int64)
    values = np.empty(count, dtype=np.float32)
    emb = np.asarray(embeddings, dtype=np.float64)
    for step in range(count):
        objective = np.where(avail, (1.0 - diversity) * rel - diversity * max_sim, -np.inf)
        pick = int(np.argmax(objective))
        if not np.isfinite(objective[pick]):
            return picks[:step], values[:step]
        picks[step] = pick
        values[step] = objective[pick]
        avail[pick] = False
        if on_pick is not None:
            on_pick(pick, avail)
        np.maximum(max_sim, emb @ emb[pick], out=max_sim)
    return picks, values


def dpp(
    relevance: np.ndarray,
    embeddings: np.ndarray,
    count: int,
    diversity: float,
    available: np.ndarray | None = None,
    on_pick: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy MAP inference of a DPP with kernel L = diag(q) S diag(q), S = E Eᵀ, q = exp(alpha * relevance)
    (Chen, Zhang and Zhou, NeurIPS 2018), in O(k * N * (d + k)).

    The q factors cancel out of the incremental Cholesky update, so the loop keeps only the unit-kernel
    residuals r_i = 1 - |c_i|² and picks argmax (1 - lambda) * rel_i + lambda/2 * log r_i: the log-det gain
    with quality weight 1 - lambda, stable for any lambda. `available` and `on_pick` are as in `mmr`.
    """
    rel, avail, count = _prepare(relevance, available, count)
    if count <= 0:
        return _EMPTY
    if diversity <= 0.0:
        return _by_relevance(rel, avail, count, on_pick)
    emb = np.asarray(embeddings, dtype=np.float64)
    # One row per step, so that each update reads the earlier steps as a contiguous block.
    chol = np.zeros((count, len(rel)))
    residual = np.maximum(np.einsum("ij,ij->i", emb, emb), _EPS)  # s_ii (1 for unit embeddings)
    picks = np.empty(count, dtype=np.int64)
    values = np.empty(count, dtype=np.float32)
    quality, half = (1.0 - diversity) * rel, 0.5 * diversity
    for step in range(count):
        objective = quality + half * np.log(np.maximum(residual, _EPS))
        objective[~avail] = -np.inf
        pick = int(np.argmax(objective))
        if not np.isfinite(objective[pick]):
            return picks[:step], values[:step]
        picks[step], values[step] = pick, objective[pick]
        avail[pick] = False
        if on_pick is not None:
            on_pick(pick, avail)
        d_pick = np.sqrt(max(residual[pick], _EPS))
        e = (emb @ emb[pick] - chol[:step, pick] @ chol[:step]) / d_pick
        chol[step] = e
        residual -= e * e
    return picks, np.minimum.accumulate(values)  # scores descend with the position


def calibrated(
    relevance: np.ndarray,
    genres: np.ndarray,
    target: np.ndarray,
    count: int,
    strength: float,
    available: np.ndarray | None = None,
    on_pick: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy calibrated reranking: each pick maximises (1 - lambda) * relevance - lambda * KL(p || q~), where p
    is `target` (G,) and q~ = (1 - a) q + a p the genre mix of the list with the candidate added, smoothed by
    a = 0.01 as in Steck's paper. O(k * N * G).

    genres: (N, G) per-candidate genre distributions (rows sum to 1, or 0 for an item without genres). Without
    a target (an all-zero `target`, e.g. no history) the relevance order is kept. `available` and `on_pick`
    are as in `mmr`.
    """
    rel, avail, count = _prepare(relevance, available, count)
    if count <= 0:
        return _EMPTY
    p = np.asarray(target, dtype=np.float64)
    if strength <= 0.0 or p.sum() <= 0:
        return _by_relevance(rel, avail, count, on_pick)
    p = p / p.sum()
    support = p > 0
    p_s = p[support]
    g = np.asarray(genres, dtype=np.float64)[:, support]
    mix = np.zeros(len(p_s))  # sum of the picked items' genre distributions (on the target's support)
    kl_before = -np.log(_CALIBRATION_ALPHA)  # KL of the empty list (q = 0, so q~ = a p)
    picks = np.empty(count, dtype=np.int64)
    values = np.empty(count, dtype=np.float32)
    for step in range(count):
        q = (mix + g) / (step + 1)  # (N, G'): the list's genre mix if each candidate were added
        kl = (p_s * np.log(p_s / ((1 - _CALIBRATION_ALPHA) * q + _CALIBRATION_ALPHA * p_s))).sum(axis=1)
        objective = np.where(avail, (1.0 - strength) * rel - strength * kl, -np.inf)
        pick = int(np.argmax(objective))
        if not np.isfinite(objective[pick]):
            return picks[:step], values[:step]
        # The reported value is the pick's marginal gain (the KL change it brings), not the raw objective.
        picks[step], values[step] = pick, objective[pick] + strength * kl_before
        kl_before = kl[pick]
        avail[pick] = False
        if on_pick is not None:
            on_pick(pick, avail)
        mix += g[pick]
    return picks, np.minimum.accumulate(values)  # scores descend with the position


def genre_distributions(item_genres: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> np.ndarray:
    """(n_items, G) rows: each item's genres weighted equally (all zero for an item without genres)."""
    column = {genre: j for j, genre in enumerate(vocabulary)}
    out = np.zeros((len(item_genres), len(vocabulary)), dtype=np.float32)
    for i, genres in enumerate(item_genres):
        cols = [column[g] for g in genres if g in column]
        if cols:
            out[i, cols] = 1.0 / len(cols)
    return out


_CALIBRATION_ALPHA = 0.01
_EPS = 1e-10


def _prepare(relevance: np.ndarray, available: np.ndarray | None, count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Scaled relevance, the availability mask (the caller's, updated in place) and the reachable count."""
    rel = scaled(relevance)
    avail = np.ones(len(rel), dtype=bool) if available is None else available
    if avail.dtype != np.bool_:
        raise TypeError("available must be a boolean mask")
    return rel, avail, min(count, int(avail.sum()))


_EMPTY = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


def scaled(relevance: np.ndarray) -> np.ndarray:
    """Relevance min-max scaled to [0, 1], so the diversity strength means the same for any score range."""
    rel = np.asarray(relevance, dtype=np.float64)
    if not len(rel):
        return rel
    span = rel.max() - rel.min()
    return (rel - rel.min()) / span if span > 0 else np.zeros(len(rel))


def _by_relevance(
    rel: np.ndarray, avail: np.ndarray, count: int, on_pick: Callable[[int, np.ndarray], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Diversity 0: the relevance order (stable), still honouring `available` and `on_pick` (caps)."""
    if on_pick is None:
        order = np.flatnonzero(avail)[np.argsort(-rel[avail], kind="stable")][:count]
        return order, rel[order].astype(np.float32)
    picks: list[int] = []
    for pos in np.argsort(-rel, kind="stable"):
        if len(picks) == count:
            break
        if avail[pos]:
            picks.append(int(pos))
            avail[pos] = False
            on_pick(int(pos), avail)
    order = np.asarray(picks, dtype=np.int64)
    return order, rel[order].astype(np.float32)
