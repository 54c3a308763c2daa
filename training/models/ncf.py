"""Neural collaborative filtering: NeuMF (He et al., 2017), a GMF and an MLP branch with their own user and
item embeddings, fused by a final linear layer; binary cross-entropy with uniformly drawn negatives."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.data.interactions import Interactions
from training.loop import Batch, BatchLoss, EpochLoop, LocalContext, TrainContext, set_seed, unwrap
from training.models.ranker import seen_keys


@dataclass(frozen=True)
class NcfConfig:
    gmf_dim: int = 32
    mlp_dim: int = 32
    hidden: tuple[int, ...] = (64, 32, 16)
    negatives: int = 4
    epochs: int = 10
    batch_size: int = 2048
    lr: float = 2e-3
    weight_decay: float = 1e-6
    seed: int = 0


class NeuMf(nn.Module):
    def __init__(self, n_users: int, n_items: int, config: NcfConfig) -> None:
        super().__init__()
        self.gmf_user = nn.Embedding(n_users, config.gmf_dim)
        self.gmf_item = nn.Embedding(n_items, config.gmf_dim)
        self.mlp_user = nn.Embedding(n_users, config.mlp_dim)
        self.mlp_item = nn.Embedding(n_items, config.mlp_dim)
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=0.05)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise([2 * config.mlp_dim, *config.hidden]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(config.gmf_dim + (config.hidden[-1] if config.hidden else 2 * config.mlp_dim), 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) users, (B,) items -> (B,) logits."""
        gmf = self.gmf_user(users) * self.gmf_item(items)
        mlp = self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=1))
        return self.out(torch.cat([gmf, mlp], dim=1))[:, 0]


def train_ncf(data: Interactions, config: NcfConfig, ctx: TrainContext | None = None) -> NeuMf:
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    model = NeuMf(data.n_users, data.n_items, config)
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    keys = seen_keys(data)
    loss_fn = nn.BCEWithLogitsLoss()
    k = config.negatives

    def start_epoch(order: np.ndarray) -> BatchLoss:
        """Each positive of this epoch's order with k negatives drawn for it (rows in the order's order)."""
        u = data.user_idx[order]
        neg = rng.integers(0, data.n_items, (len(order), k))
        hit = np.isin(u[:, None] * data.n_items + neg, keys)
        neg[hit] = rng.integers(0, data.n_items, int(hit.sum()))  # one redraw is enough at this density
        users = torch.from_numpy(np.concatenate([u[:, None], np.repeat(u[:, None], k, axis=1)], axis=1))
        items = torch.from_numpy(np.concatenate([data.item_idx[order][:, None], neg], axis=1))
        labels = torch.zeros(len(order), k + 1)
        labels[:, 0] = 1.0

        def loss(batch: Batch) -> torch.Tensor:
            sl = batch.rows
            return loss_fn(trained(users[sl].reshape(-1), items[sl].reshape(-1)), labels[sl].reshape(-1))

        return loss

    EpochLoop("ncf", config.epochs, config.batch_size, ctx).run(trained, opt, len(data), rng, start_epoch)
    result = unwrap(trained)
    assert isinstance(result, NeuMf)
    result.eval()
    return result


class NcfRecommender:
    name = "ncf"

    def __init__(self, config: NcfConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or NcfConfig()
        self.ctx = ctx
        self.model: NeuMf | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.model = train_ncf(train, self.config, self.ctx)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ncf is not fitted")
        n_items = self.model.gmf_item.num_embeddings
        u = torch.from_numpy(np.repeat(np.asarray(users, dtype=np.int64), n_items))
        i = torch.arange(n_items).repeat(len(users))
        with torch.no_grad():
            return self.model(u, i).reshape(len(users), n_items).numpy().astype(np.float32)
