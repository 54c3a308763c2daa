"""Reference recommenders for the evaluation harness: popularity, ItemKNN and an adapter around BPR-MF."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.interactions import Interactions
from training.loop import TrainContext
from training.models.mf import MfConfig, train_bpr


class PopularityRecommender:
    """Every user gets the items with the most training interactions."""

    name = "popularity"

    def __init__(self) -> None:
        self.popularity: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.popularity = train.item_popularity().astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.popularity is None:
            raise RuntimeError("popularity is not fitted")
        return np.tile(self.popularity, (len(users), 1))


@dataclass(frozen=True)
class ItemKnnConfig:
    neighbours: int = 100
    shrink: float = 10.0  # damps similarities supported by few co-occurrences


def item_similarities(matrix: np.ndarray, config: ItemKnnConfig) -> np.ndarray:
    """(n_items, n_items) shrunk cosine similarities of the item columns of a 0/1 user-item matrix, keeping
    each item's top `neighbours` (column j holds the neighbours of item j), zero diagonal."""
    co = matrix.T @ matrix
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + config.shrink + 1e-9)
    np.fill_diagonal(sim, 0.0)
    k = min(config.neighbours, sim.shape[0] - 1)
    if 0 < k < sim.shape[0] - 1:
        cut = np.partition(sim, -k, axis=0)[-k]
        sim = np.where(sim >= cut[None, :], sim, 0.0)
    return sim.astype(np.float32)


class ItemKnnRecommender:
    """Item-based k-nearest neighbours: score(u, j) = sum of the similarities of j to u's training items."""

    name = "item_knn"

    def __init__(self, config: ItemKnnConfig | None = None) -> None:
        self.config = config or ItemKnnConfig()
        self.matrix: np.ndarray | None = None
        self.similarity: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.matrix = train.user_item_matrix()
        self.similarity = item_similarities(self.matrix, self.config)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.matrix is None or self.similarity is None:
            raise RuntimeError("item_knn is not fitted")
        return (self.matrix[np.asarray(users)] @ self.similarity).astype(np.float32)


class BprMfRecommender:
    """The retrieval model of the first bundle (training/models/mf.py): inner products of its exported vectors."""

    name = "bpr_mf"

    def __init__(self, config: MfConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or MfConfig()
        self.ctx = ctx
        self.user_vecs: np.ndarray | None = None
        self.item_vecs: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        model = train_bpr(train.user_idx, train.item_idx, train.n_users, train.n_items, self.config, self.ctx)
        self.user_vecs, self.item_vecs = model.export()

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.user_vecs is None or self.item_vecs is None:
            raise RuntimeError("bpr_mf is not fitted")
        return (self.user_vecs[np.asarray(users)] @ self.item_vecs.T).astype(np.float32)
