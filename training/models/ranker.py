"""The MLP ranker: embeddings of the categorical features, a genre projection and a dense bottom layer,
concatenated into an MLP that outputs the logit of a positive interaction.

Trained with binary cross-entropy on positives and sampled negatives; training/export.py turns it into the
ONNX model both ranking backends serve.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from services.ranking.features import DENSE_FEATURES, EncodedBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerConfig:
    embedding_dim: int = 16
    hidden: tuple[int, ...] = (128, 64)
    epochs: int = 4
    batch_size: int = 2048
    lr: float = 2e-3
    weight_decay: float = 1e-6
    seed: int = 0


class MlpRankerModule(nn.Module):
    def __init__(self, cardinalities: list[int], n_genres: int, config: RankerConfig) -> None:
        super().__init__()
        d = config.embedding_dim
        tables = [nn.Embedding(c, d) for c in cardinalities]
        for table in tables:
            nn.init.normal_(table.weight, std=0.05)
        self.tables = tables
        self.embeddings = nn.ModuleList(tables)  # registers the tables' parameters
        self.genre = nn.Linear(n_genres, d, bias=False)
        self.dense = nn.Linear(len(DENSE_FEATURES), d)
        widths = [d * (len(cardinalities) + 2), *config.hidden, 1]
        self.linears = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
        self.mlp = nn.ModuleList(self.linears)  # registers the layers' parameters

    def forward(self, sparse: torch.Tensor, genres: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """sparse (B, S) int64, genres (B, G), dense (B, D) -> (B,) logits."""
        parts = [table(sparse[:, i]) for i, table in enumerate(self.tables)]
        parts.append(self.genre(genres))
        parts.append(torch.relu(self.dense(dense)))
        h = torch.cat(parts, dim=1)
        for layer in self.linears[:-1]:
            h = torch.relu(layer(h))
        return self.linears[-1](h)[:, 0]


def train_ranker(
    batch: EncodedBatch, labels: np.ndarray, cardinalities: list[int], config: RankerConfig
) -> MlpRankerModule:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MlpRankerModule(cardinalities, batch.genres.shape[1], config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sparse = torch.from_numpy(batch.sparse)
    genres = torch.from_numpy(batch.genres)
    dense = torch.from_numpy(batch.dense)
    y = torch.from_numpy(labels.astype(np.float32))
    n = len(labels)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(config.epochs):
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            loss = loss_fn(model(sparse[idx], genres[idx], dense[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("ranker epoch %d/%d bce %.4f", epoch + 1, config.epochs, total / n)
    return model
