"""DLRM ranker (Naumov et al., 2019): one embedding per categorical feature plus the genre projection, a
bottom MLP over the dense features, pairwise dot products between all of these vectors, and a top MLP.

Keeps the MLP ranker's forward signature over the feature contract (artifacts/ranker_features.py), so
training/export.py exports it to the ONNX interface both ranking backends serve.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from artifacts.ranker_features import DENSE_FEATURES, EncodedBatch
from training.loop import TrainContext, set_seed
from training.models.base import Recommender
from training.models.ranker import OBJECTIVES, NegativeSampling, RankerRecommender, fit_ranking_module
from training.models.two_tower import TwoTowerConfig
from training.models.two_tower_inference import TwoTowerRecommender


@dataclass(frozen=True)
class DlrmConfig:
    embedding_dim: int = 32
    bottom: tuple[int, ...] = (64,)
    top: tuple[int, ...] = (128, 64)
    dropout: float = 0.0
    objective: str = "implicit"  # "implicit" (BCE on 0/1 labels) or "rating" (MSE on ratings)
    epochs: int = 2  # more epochs overfit the id embeddings (measured: 3 epochs lose 0.01 NDCG@10)
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-5
    seed: int = 0
    sampling: NegativeSampling = field(default_factory=NegativeSampling)


def _mlp(widths: list[int], dropout: float, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DlrmModule(nn.Module):
    pairs: torch.Tensor

    def __init__(self, cardinalities: list[int], n_genres: int, config: DlrmConfig) -> None:
        super().__init__()
        d = config.embedding_dim
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c in cardinalities)
        for table in self.embeddings:
            assert isinstance(table, nn.Embedding)
            nn.init.normal_(table.weight, std=0.05)
        self.genre = nn.Linear(n_genres, d, bias=False)
        self.bottom = _mlp([len(DENSE_FEATURES), *config.bottom, d], config.dropout, last_activation=True)
        n_vectors = len(cardinalities) + 2  # categorical embeddings, genres, bottom MLP output
        rows, cols = np.triu_indices(n_vectors, k=1)
        # Flat positions of the strictly upper triangle of the (F, F) dot-product matrix.
        self.register_buffer("pairs", torch.from_numpy((rows * n_vectors + cols).astype(np.int64)))
        self.top = _mlp([d + len(rows), *config.top, 1], config.dropout, last_activation=False)

    def forward(self, sparse: torch.Tensor, genres: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """sparse (B, S) int64, genres (B, G), dense (B, D) -> (B,) logits."""
        x = self.bottom(dense)
        vectors = [table(sparse[:, i]) for i, table in enumerate(self.embeddings)]
        vectors += [self.genre(genres), x]
        t = torch.stack(vectors, dim=1)  # (B, F, d)
        dots = torch.bmm(t, t.transpose(1, 2)).flatten(1)  # (B, F*F)
        z = torch.index_select(dots, 1, self.pairs)
        return self.top(torch.cat([x, z], dim=1))[:, 0]


def train_dlrm(
    batch: EncodedBatch,
    targets: np.ndarray,
    cardinalities: list[int],
    config: DlrmConfig,
    ctx: TrainContext | None = None,
) -> DlrmModule:
    """`targets`: 0/1 labels for the implicit objective (ranker_examples), centred ratings for the rating
    objective (rating_examples)."""
    if config.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {config.objective!r}")
    set_seed(config.seed)
    model = DlrmModule(cardinalities, batch.genres.shape[1], config)
    fit_ranking_module(model, batch, targets, config, config.objective, ctx, name="dlrm")
    return model


class DlrmRecommender(RankerRecommender):
    """DLRM over a retriever's candidates (see RankerRecommender; the two-tower model unless another is given);
    `predict_ratings` with objective="rating"."""

    def __init__(
        self,
        config: DlrmConfig | None = None,
        retriever: Recommender | None = None,
        n_candidates: int = 500,
        fit_retriever: bool = True,
        ctx: TrainContext | None = None,
    ) -> None:
        cfg = config or DlrmConfig()
        if retriever is None:  # the served pipeline's retriever
            retriever = TwoTowerRecommender(TwoTowerConfig(seed=cfg.seed), ctx)
        super().__init__(
            lambda cards, n_genres: DlrmModule(cards, n_genres, cfg),
            cfg,
            cfg.objective,
            retriever,
            cfg.sampling,
            n_candidates,
            fit_retriever,
            ctx,
        )
        self.name = "dlrm" if cfg.objective == "implicit" else "dlrm_rating"
