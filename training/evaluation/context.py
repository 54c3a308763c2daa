"""What every model is measured against: the evaluation settings and, per split, the evaluated users, their
test items and the items to exclude from their lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation import metrics as m
from training.evaluation.splits import Split

#: Score-matrix cells per batch (users x items); bounds memory for large catalogues.
BATCH_CELLS = 1 << 24
#: Epochs of every model (and of the pipeline's) with `quick` (smoke runs and tests).
QUICK_EPOCHS = 2


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10, 20)
    seed: int = 0
    quick: bool = False
    #: users with at most this many training interactions form the cold-user slice
    cold_user_max_train: int = 5
    #: test interactions whose item has at most this many training interactions form the cold-item slice
    cold_item_max_train: int = 5

    @property
    def max_k(self) -> int:
        return max(self.ks)


def csr(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(user_idx, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(user_idx, minlength=n_users))]).astype(np.int64)
    return indptr, item_idx[order].astype(np.int64)


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of the row in `rows`, item) for every entry of the given CSR rows, vectorised."""
    lens = indptr[rows + 1] - indptr[rows]
    starts = indptr[rows]
    total = int(lens.sum())
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(total)
    return np.repeat(np.arange(len(rows)), lens), indices[offsets.astype(np.int64)]


@dataclass(frozen=True)
class EvalContext:
    """What every model is measured against, computed once per split."""

    split: Split
    config: EvalConfig
    users: np.ndarray  # evaluated user rows (at least one test interaction), ascending
    truth: m.Truth  # test items of each evaluated user
    exclude_indptr: np.ndarray  # train + validation items of every user (CSR over all users)
    exclude_indices: np.ndarray
    train_popularity: np.ndarray  # train interactions per item
    train_per_user: np.ndarray  # train interactions per user
    genre_features: np.ndarray  # (n_items, n_genres) 0/1
    user_genre_mix: np.ndarray  # (n_evaluated_users, n_genres): genre mix of each user's train items
    cold_users: np.ndarray  # bool over evaluated users
    cold_items: np.ndarray  # bool over items

    @classmethod
    def build(cls, split: Split, config: EvalConfig) -> EvalContext:
        train, valid, test = split.train, split.valid, split.test
        users = np.unique(test.user_idx)
        rows = np.searchsorted(users, test.user_idx)
        truth = m.Truth.from_pairs(rows, test.item_idx, len(users))
        seen = train.concat(valid)
        indptr, indices = csr(seen.user_idx, seen.item_idx, train.n_users)
        popularity = train.item_popularity()
        per_user = np.bincount(train.user_idx, minlength=train.n_users)
        genres, _ = train.genre_matrix()
        user_mix = np.zeros((train.n_users, genres.shape[1]))
        np.add.at(user_mix, train.user_idx, m.genre_mix(genres)[train.item_idx])
        user_mix = m.genre_mix(user_mix[users])
        return cls(
            split=split,
            config=config,
            users=users,
            truth=truth,
            exclude_indptr=indptr,
            exclude_indices=indices,
            train_popularity=popularity,
            train_per_user=per_user,
            genre_features=genres,
            user_genre_mix=user_mix,
            cold_users=per_user[users] <= config.cold_user_max_train,
            cold_items=popularity <= config.cold_item_max_train,
        )

    @property
    def n_items(self) -> int:
        return self.split.train.n_items

    def exclusions(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in batch, item) pairs to exclude for the given user rows."""
        return gather_rows(self.exclude_indptr, self.exclude_indices, batch)

    def batch_size(self) -> int:
        return max(1, BATCH_CELLS // max(self.n_items, 1))

    def score_metrics(self, topk: np.ndarray) -> dict[str, Any]:
        """Accuracy and beyond-accuracy metrics of (n_evaluated_users, >= max_k) lists, plus the slices."""
        ks = self.config.ks
        out: dict[str, Any] = {"users": len(self.users)}
        out.update(m.accuracy(topk, self.truth, ks))
        out.update(m.beyond_accuracy(topk, ks, self.n_items, self.train_popularity, self.genre_features))
        out.update(m.miscalibration(topk, ks, self.user_genre_mix, m.genre_mix(self.genre_features)))
        cold = np.flatnonzero(self.cold_users)
        out["cold_users"] = {
            "users": len(cold),
            **(m.accuracy(topk[cold], self.truth.select(cold), ks) if len(cold) else {}),
        }
        cold_truth = self.truth.filter_items(self.cold_items)
        has = np.flatnonzero(cold_truth.counts > 0)
        out["cold_items"] = {
            "users": len(has),
            "interactions": int(cold_truth.counts.sum()),
            **(m.accuracy(topk[has], cold_truth.select(has), ks) if len(has) else {}),
        }
        return out
