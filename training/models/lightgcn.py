"""LightGCN (He et al., 2020) on the user-item bipartite graph, trained with BPR.

Embeddings are propagated K times over the symmetrically normalised adjacency D^-1/2 A D^-1/2 (torch sparse
ops) and averaged over the layers; score(u, i) is the inner product. The exported user and item embeddings
serve the rerank stage's graph affinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.data.interactions import Interactions
from training.loop import Batch, BatchLoss, EpochLoop, LocalContext, TrainContext, set_seed, unwrap


@dataclass(frozen=True)
class LightGcnConfig:
    dim: int = 64
    layers: int = 3
    epochs: int = 30
    batch_size: int = 2048
    lr: float = 5e-3
    weight_decay: float = 1e-4  # L2 on the layer-0 embeddings of the batch, as in the paper
    seed: int = 0


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """Sparse (n_users + n_items)^2 matrix D^-1/2 A D^-1/2 of the bipartite graph (duplicates counted once)."""
    keys = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    u, i = keys // n_items, keys % n_items + n_users
    rows = np.concatenate([u, i])
    cols = np.concatenate([i, u])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    values = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    size = n_users + n_items
    indices = torch.from_numpy(np.stack([rows, cols]))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(values), (size, size), check_invariants=True).coalesce()


class LightGcn(nn.Module):
    def __init__(self, adjacency: torch.Tensor, n_users: int, n_items: int, config: LightGcnConfig) -> None:
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, config.layers
        self.embedding = nn.Embedding(n_users + n_items, config.dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.adjacency = adjacency  # not a buffer: fixed, and DDP need not broadcast a sparse tensor

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embedding.weight
        total = e
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adjacency, e)
            total = total + e
        out = total / (self.layers + 1)
        return out[: self.n_users], out[self.n_users :]

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BPR score differences (B,) and the squared norm of the batch's layer-0 embeddings (scalar)."""
        user_emb, item_emb = self.propagate()
        u = user_emb[users]
        diff = (u * item_emb[pos]).sum(-1) - (u * item_emb[neg]).sum(-1)
        ego = self.embedding.weight
        reg = ego[users].pow(2).sum() + ego[pos + self.n_users].pow(2).sum() + ego[neg + self.n_users].pow(2).sum()
        return diff, reg

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_users, dim) and (n_items, dim) float32 propagated embeddings."""
        with torch.no_grad():
            users, items = self.propagate()
        return users.numpy().astype(np.float32), items.numpy().astype(np.float32)


def train_lightgcn(data: Interactions, config: LightGcnConfig, ctx: TrainContext | None = None) -> LightGcn:
    """BPR with one uniformly drawn negative per training interaction."""
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    adjacency = normalized_adjacency(data.user_idx, data.item_idx, data.n_users, data.n_items)
    model = LightGcn(adjacency, data.n_users, data.n_items, config)
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr)
    users = torch.from_numpy(data.user_idx)
    items = torch.from_numpy(data.item_idx)

    def start_epoch(order: np.ndarray) -> BatchLoss:
        negs = torch.from_numpy(rng.integers(0, data.n_items, len(order)))  # aligned with this epoch's order

        def loss(batch: Batch) -> torch.Tensor:
            idx = batch.idx
            diff, reg = trained(users[idx], items[idx], negs[batch.rows])
            return -F.logsigmoid(diff).mean() + config.weight_decay * reg / (2 * len(idx))

        return loss

    EpochLoop("lightgcn", config.epochs, config.batch_size, ctx, log_every=10).run(
        trained, opt, len(data), rng, start_epoch
    )
    result = unwrap(trained)
    assert isinstance(result, LightGcn)
    return result


class LightGcnRecommender:
    name = "lightgcn"

    def __init__(self, config: LightGcnConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or LightGcnConfig()
        self.ctx = ctx
        self.user_vecs: np.ndarray | None = None
        self.item_vecs: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.user_vecs, self.item_vecs = train_lightgcn(train, self.config, self.ctx).export()

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.user_vecs is None or self.item_vecs is None:
            raise RuntimeError("lightgcn is not fitted")
        return (self.user_vecs[np.asarray(users)] @ self.item_vecs.T).astype(np.float32)
