"""Top-k metrics, vectorised over users: accuracy, beyond-accuracy (coverage, Gini, diversity, novelty,
popularity) and rating errors. Definitions are in docs/evaluation.md.

Recommendation lists are (n_users, K) int64 arrays of item rows, best first; -1 pads a list that holds
fewer than K items. Relevant items are a `Truth`: a CSR over the same n_users rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ACCURACY_METRICS = ("precision", "recall", "f1", "map", "ndcg", "mrr", "hit_rate")
BEYOND_ACCURACY_METRICS = ("coverage", "gini", "ild", "novelty", "avg_popularity")


@dataclass(frozen=True)
class Truth:
    """Relevant item rows of each evaluated user: row r holds indices[indptr[r]:indptr[r + 1]]."""

    indptr: np.ndarray  # int64 (n_users + 1,)
    indices: np.ndarray  # int64 item rows

    @classmethod
    def from_pairs(cls, rows: np.ndarray, items: np.ndarray, n_rows: int) -> Truth:
        """From (row, item) pairs; duplicate pairs count once."""
        keys = np.unique(np.asarray(rows, dtype=np.int64) * (int(items.max(initial=0)) + 1) + items)
        width = int(items.max(initial=0)) + 1
        r, i = keys // width, keys % width
        indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n_rows))]).astype(np.int64)
        return cls(indptr=indptr, indices=i.astype(np.int64))

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> Truth:
        rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
        items = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=len(rows))
        return cls.from_pairs(rows, items, len(lists))

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def rows_of_items(self) -> np.ndarray:
        """The row of every entry of `indices`."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.counts)

    def select(self, rows: np.ndarray) -> Truth:
        """The truth of the given rows, renumbered 0..len(rows)-1."""
        rows = np.asarray(rows, dtype=np.int64)
        lens = self.counts[rows]
        starts = self.indptr[rows]
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return Truth(indptr=indptr, indices=self.indices[offsets.astype(np.int64)])

    def filter_items(self, keep_item: np.ndarray) -> Truth:
        """Only the entries whose item passes the boolean mask `keep_item` (over item rows)."""
        keep = keep_item[self.indices]
        rows = self.rows_of_items()[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_rows))]).astype(np.int64)
        return Truth(indptr=indptr, indices=self.indices[keep])


def relevance(topk: np.ndarray, truth: Truth) -> np.ndarray:
    """(n_users, K) bool: whether each recommended item is relevant to its user (padding never is)."""
    n, _ = topk.shape
    if truth.n_rows != n:
        raise ValueError(f"{n} recommendation lists but truth for {truth.n_rows} users")
    width = int(max(topk.max(initial=-1), truth.indices.max(initial=-1))) + 2
    truth_keys = truth.rows_of_items() * width + truth.indices
    list_keys = np.arange(n, dtype=np.int64)[:, None] * width + topk
    return np.isin(list_keys, truth_keys) & (topk >= 0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def accuracy_per_user(topk: np.ndarray, truth: Truth, k: int) -> dict[str, np.ndarray]:
    """Per-user precision, recall, F1, AP, NDCG, reciprocal rank and hit @k (binary relevance)."""
    if topk.shape[1] < k:
        topk = np.pad(topk, ((0, 0), (0, k - topk.shape[1])), constant_values=-1)
    rel = relevance(topk[:, :k], truth).astype(np.float64)
    n_rel = truth.counts.astype(np.float64)
    cum = np.cumsum(rel, axis=1)
    hits = cum[:, -1] if k > 0 else np.zeros(len(rel))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = hits / k
        recall = np.where(n_rel > 0, hits / n_rel, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        ideal_hits = np.minimum(n_rel, k)
        precision_at = cum / np.arange(1, k + 1)
        ap = np.where(ideal_hits > 0, (precision_at * rel).sum(axis=1) / ideal_hits, 0.0)
        disc = _discounts(k)
        dcg = rel @ disc
        idcg = np.concatenate([[0.0], np.cumsum(disc)])[ideal_hits.astype(np.int64)]
        ndcg = np.where(idcg > 0, dcg / idcg, 0.0)
    first = np.argmax(rel > 0, axis=1)
    any_hit = hits > 0
    mrr = np.where(any_hit, 1.0 / (first + 1), 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "map": ap,
        "ndcg": ndcg,
        "mrr": mrr,
        "hit_rate": any_hit.astype(np.float64),
    }


def accuracy(topk: np.ndarray, truth: Truth, ks: Sequence[int]) -> dict[str, float]:
    """Means over users of the accuracy metrics, keyed `name@k`; users without relevant items are skipped."""
    has = truth.counts > 0
    out: dict[str, float] = {}
    for k in ks:
        per_user = accuracy_per_user(topk[has], truth.select(np.flatnonzero(has)), k)
        for name in ACCURACY_METRICS:
            values = per_user[name]
            out[f"{name}@{k}"] = float(values.mean()) if len(values) else float("nan")
    return out


def gini_index(counts: np.ndarray) -> float:
    """Gini index of how often each catalogue item is recommended (0 = uniform, -> 1 = one item only)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * c).sum() / (n * total))


def self_information(train_popularity: np.ndarray) -> np.ndarray:
    """-log2 p(i) with p(i) = (train count + 1) / (train interactions + n_items): finite for unseen items."""
    pop = np.asarray(train_popularity, dtype=np.float64)
    return -np.log2((pop + 1.0) / (pop.sum() + len(pop)))


def intra_list_distance(topk: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per-user mean pairwise cosine distance between the items' feature vectors (e.g. genre flags).

    An item without features is at distance 1 from everything; lists with fewer than 2 items give NaN.
    """
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = np.concatenate([features / np.where(norms > 0, norms, 1.0), np.zeros((1, features.shape[1]))])
    valid = topk >= 0
    emb = unit[np.where(valid, topk, len(features))]  # padding -> the zero row
    sim = np.einsum("nkg,njg->nkj", emb, emb)
    pair = valid[:, :, None] & valid[:, None, :]
    k = topk.shape[1]
    pair &= ~np.eye(k, dtype=bool)[None]
    n_pairs = pair.sum(axis=(1, 2))
    dist = np.where(pair, 1.0 - sim, 0.0).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_pairs > 0, dist / n_pairs, np.nan)


def _mean_over_lists(values: np.ndarray, topk: np.ndarray) -> float:
    """Mean over users of the mean of `values[item]` over each user's (non-padding) list."""
    valid = topk >= 0
    per_item = np.where(valid, values[np.where(valid, topk, 0)], 0.0)
    n = valid.sum(axis=1)
    keep = n > 0
    if not keep.any():
        return float("nan")
    return float((per_item.sum(axis=1)[keep] / n[keep]).mean())


def beyond_accuracy(
    topk: np.ndarray, ks: Sequence[int], n_items: int, train_popularity: np.ndarray, item_features: np.ndarray
) -> dict[str, float]:
    """Coverage, Gini index, intra-list diversity, novelty and average popularity @k."""
    info = self_information(train_popularity)
    pop = np.asarray(train_popularity, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        lists = topk[:, :k]
        items = lists[lists >= 0]
        counts = np.bincount(items, minlength=n_items)
        ild = intra_list_distance(lists, item_features)
        out[f"coverage@{k}"] = float((counts > 0).sum() / n_items)
        out[f"gini@{k}"] = gini_index(counts)
        out[f"ild@{k}"] = float(np.nanmean(ild)) if np.isfinite(ild).any() else float("nan")
        out[f"novelty@{k}"] = _mean_over_lists(info, lists)
        out[f"avg_popularity@{k}"] = _mean_over_lists(pop, lists)
    return out


def genre_mix(item_features: np.ndarray) -> np.ndarray:
    """(n_items, G) genre distributions: each item's genre flags weighted equally (zero rows stay zero)."""
    f = np.asarray(item_features, dtype=np.float64)
    total = f.sum(axis=1, keepdims=True)
    return np.divide(f, total, out=np.zeros_like(f), where=total > 0)


def miscalibration(
    topk: np.ndarray, ks: Sequence[int], user_mix: np.ndarray, item_mix: np.ndarray, alpha: float = 0.01
) -> dict[str, float]:
    """Steck's miscalibration @k: mean over users (with a genre history) of KL(p_u || (1 - a) q_u + a p_u), p_u
    the genre mix of the user's train items, q_u that of the list. 0 = the list mirrors the history."""
    p = np.asarray(user_mix, dtype=np.float64)
    has = p.sum(axis=1) > 0
    out: dict[str, float] = {}
    padded = np.concatenate([item_mix, np.zeros((1, item_mix.shape[1]))])
    for k in ks:
        lists = topk[:, :k]
        valid = lists >= 0
        n = np.maximum(valid.sum(axis=1, keepdims=True), 1)
        q = padded[np.where(valid, lists, len(item_mix))].sum(axis=1) / n
        smoothed = (1 - alpha) * q + alpha * p
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(p > 0, smoothed, 1.0)), 0.0)
        kl = terms.sum(axis=1)
        out[f"miscalibration@{k}"] = float(kl[has].mean()) if has.any() else float("nan")
    return out


def rating_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over the pairs whose actual rating is known."""
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    known = np.isfinite(a)
    if not known.any():
        return {"rmse": float("nan"), "mae": float("nan")}
    err = p[known] - a[known]
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def top_k(scores: np.ndarray, k: int, exclude_rows: np.ndarray, exclude_cols: np.ndarray) -> np.ndarray:
    """The k best columns of each row of `scores` (best first), after setting the excluded (row, col) pairs to
    -inf; -1 where fewer than k columns have a finite score. Equal scores go to the lower column, also at
    the cut, so the lists are deterministic. Vectorised: one partition and a few passes over the matrix."""
    s = np.array(scores, dtype=np.float32, copy=True)
    s[np.isnan(s)] = -np.inf
    s[exclude_rows, exclude_cols] = -np.inf
    n, m = s.shape
    k_eff = min(k, m)
    if k_eff == 0 or n == 0:
        return np.full((n, k), -1, dtype=np.int64)
    kth = -np.partition(-s, k_eff - 1, axis=1)[:, k_eff - 1 : k_eff]  # the k-th best score per row
    above = s > kth
    at = s == kth
    need = k_eff - above.sum(axis=1, keepdims=True)
    chosen = above | (at & (np.cumsum(at, axis=1) <= need))
    cols = np.nonzero(chosen)[1].reshape(n, k_eff)  # row-major: exactly k_eff per row, in column order
    chosen_scores = np.take_along_axis(s, cols, axis=1)
    order = np.lexsort((cols, -chosen_scores), axis=1)
    best = np.take_along_axis(cols, order, axis=1)
    best = np.where(np.isfinite(np.take_along_axis(chosen_scores, order, axis=1)), best, -1)
    if k_eff < k:
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return best.astype(np.int64)
