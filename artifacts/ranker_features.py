"""The ranker's feature contract and its encoding, shared by training and serving.

Training builds a `RankerContract` from the data and writes it into the bundle; the ranking service reads it
back and encodes requests with the same functions, so the two cannot drift. Item features are encoded once
into arrays aligned with the bundle's item order; a request encodes one user row and gathers item rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

#: Changes whenever the encoding below changes; the bundle records it and the service checks it.
CONTRACT_VERSION = "ranker-features/1"

#: Categorical inputs in model order: name -> which side supplies it.
SPARSE_FEATURES: tuple[tuple[str, str], ...] = (
    ("user_id", "user"),
    ("age_bucket", "user"),
    ("gender", "user"),
    ("occupation", "user"),
    ("hour", "context"),
    ("weekday", "context"),
    ("item_id", "item"),
)
USER_DENSE = ("user_log_count", "user_mean_rating")
ITEM_DENSE = ("item_log_popularity", "item_mean_rating", "item_log_recent_popularity", "item_year")
DENSE_FEATURES = USER_DENSE + ITEM_DENSE


@dataclass(frozen=True)
class RankerContract:
    """Vocabularies and normalisation constants. Index 0 of every vocabulary is "unknown"."""

    version: str
    vocabularies: dict[str, list[str]]
    genres: list[str]
    dense_mean: list[float]
    dense_std: list[float]
    global_mean_rating: float

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RankerContract:
        return cls(**data)

    def cardinalities(self) -> list[int]:
        """Embedding table sizes in SPARSE_FEATURES order (vocabulary plus the unknown slot)."""
        return [len(self.vocabularies[name]) + 1 for name, _ in SPARSE_FEATURES]

    @cached_property
    def _indices(self) -> dict[str, dict[str, int]]:
        """value -> index per vocabulary, built once (index 0 is "unknown")."""
        return {name: {v: i + 1 for i, v in enumerate(vocab)} for name, vocab in self.vocabularies.items()}

    def lookup(self, name: str, values: np.ndarray) -> np.ndarray:
        """Vocabulary indices of `values` (0 for anything unknown)."""
        index = self._indices[name]
        return np.fromiter((index.get(str(v), 0) for v in values), dtype=np.int64, count=len(values))


def build_contract(
    user_ids: list[str],
    item_ids: list[str],
    occupations: list[str],
    genres: list[str],
    dense: np.ndarray,
    global_mean_rating: float,
) -> RankerContract:
    """`dense` holds training rows of DENSE_FEATURES, for the normalisation constants."""
    std = dense.std(axis=0)
    return RankerContract(
        version=CONTRACT_VERSION,
        vocabularies={
            "user_id": list(user_ids),
            "age_bucket": ["0", "18", "25", "35", "45", "50", "56"],
            "gender": ["M", "F"],
            "occupation": sorted(occupations),
            "hour": [str(h) for h in range(24)],
            "weekday": [str(d) for d in range(7)],
            "item_id": list(item_ids),
        },
        genres=list(genres),
        dense_mean=dense.mean(axis=0).astype(float).tolist(),
        dense_std=np.where(std > 1e-6, std, 1.0).astype(float).tolist(),
        global_mean_rating=float(global_mean_rating),
    )


@dataclass(frozen=True)
class EncodedItems:
    """Item-side inputs for the items of the bundle, row i = bundle item i."""

    item_index: np.ndarray  # int64 (n,) vocabulary index of the item id
    genres: np.ndarray  # float32 (n, G) multi-hot
    dense: np.ndarray  # float32 (n, len(ITEM_DENSE)), raw (not normalised)


@dataclass(frozen=True)
class EncodedBatch:
    sparse: np.ndarray  # int64 (n, len(SPARSE_FEATURES))
    genres: np.ndarray  # float32 (n, G)
    dense: np.ndarray  # float32 (n, len(DENSE_FEATURES)), normalised


def item_dense(
    popularity: np.ndarray, mean_rating: np.ndarray, recent: np.ndarray, year: np.ndarray, global_mean: float
) -> np.ndarray:
    rating = np.where(np.asarray(popularity) > 0, mean_rating, global_mean)
    return np.stack(
        [np.log1p(popularity), rating, np.log1p(recent), np.where(year > 0, year, 1990) - 1990.0], axis=1
    ).astype(np.float32)


def user_dense(count: np.ndarray, mean_rating: np.ndarray, global_mean: float) -> np.ndarray:
    rating = np.where(np.asarray(count) > 0, mean_rating, global_mean)
    return np.stack([np.log1p(count), rating], axis=1).astype(np.float32)


def encode_items(
    contract: RankerContract,
    item_ids: list[str],
    genres: list[list[str]],
    popularity: np.ndarray,
    mean_rating: np.ndarray,
    recent_popularity: np.ndarray,
    year: np.ndarray,
) -> EncodedItems:
    g_index = {g: i for i, g in enumerate(contract.genres)}
    multi_hot = np.zeros((len(item_ids), len(contract.genres)), dtype=np.float32)
    for row, names in enumerate(genres):
        for name in names:
            if name in g_index:
                multi_hot[row, g_index[name]] = 1.0
    return EncodedItems(
        item_index=contract.lookup("item_id", np.asarray(item_ids)),
        genres=multi_hot,
        dense=item_dense(popularity, mean_rating, recent_popularity, year, contract.global_mean_rating),
    )


def encode_batch(
    contract: RankerContract,
    user_sparse: np.ndarray,
    user_dense_rows: np.ndarray,
    context_sparse: np.ndarray,
    items: EncodedItems,
    rows: np.ndarray,
) -> EncodedBatch:
    """Inputs for scoring bundle items `rows` against users.

    user_sparse: (n, 4) or (1, 4) vocabulary indices of user_id, age_bucket, gender, occupation.
    user_dense_rows: (n, 2) or (1, 2) raw USER_DENSE. context_sparse: (n, 2) or (1, 2) hour, weekday indices.
    A single user row is broadcast over all items.
    """
    n = len(rows)
    sparse = np.empty((n, len(SPARSE_FEATURES)), dtype=np.int64)
    sparse[:, 0:4] = user_sparse
    sparse[:, 4:6] = context_sparse
    sparse[:, 6] = items.item_index[rows]
    dense = np.empty((n, len(DENSE_FEATURES)), dtype=np.float32)
    dense[:, : len(USER_DENSE)] = user_dense_rows
    dense[:, len(USER_DENSE) :] = items.dense[rows]
    dense -= np.asarray(contract.dense_mean, dtype=np.float32)
    dense /= np.asarray(contract.dense_std, dtype=np.float32)
    return EncodedBatch(sparse=sparse, genres=items.genres[rows], dense=dense)


def encode_user(
    contract: RankerContract,
    user_id: str,
    age_bucket: int,
    gender: str,
    occupation: str,
    interaction_count: int,
    mean_rating: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(1, 4) sparse indices and (1, 2) raw dense features of one user."""
    sparse = np.array(
        [
            [
                contract.lookup("user_id", np.asarray([user_id]))[0],
                contract.lookup("age_bucket", np.asarray([str(age_bucket)]))[0],
                contract.lookup("gender", np.asarray([gender]))[0],
                contract.lookup("occupation", np.asarray([occupation]))[0],
            ]
        ],
        dtype=np.int64,
    )
    return sparse, user_dense(np.asarray([interaction_count]), np.asarray([mean_rating]), contract.global_mean_rating)


def encode_context(hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """(n, 2) vocabulary indices of hour of day (0-23) and weekday (0 = Monday)."""
    return np.stack([np.asarray(hour, dtype=np.int64) + 1, np.asarray(weekday, dtype=np.int64) + 1], axis=1)
