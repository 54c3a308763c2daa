"""Wide & Deep ranker (Cheng et al., 2016): a linear model over hashed crossed features (memorisation) plus an
MLP over embeddings (generalisation), summed into one logit.

Crosses: user, age, occupation and gender by genre (one term per genre of the item), and item by age, gender
and occupation. Keeps the MLP ranker's forward signature over the feature contract, so training/export.py
exports it to the ONNX interface both ranking backends serve (hashing is integer Mul/Add/Mod in ONNX).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from artifacts.ranker_features import DENSE_FEATURES, SPARSE_FEATURES, EncodedBatch
from training.loop import TrainContext, set_seed
from training.models.base import Recommender
from training.models.ranker import OBJECTIVES, NegativeSampling, RankerRecommender, fit_ranking_module
from training.models.two_tower import TwoTowerConfig
from training.models.two_tower_inference import TwoTowerRecommender

_COL = {name: i for i, (name, _) in enumerate(SPARSE_FEATURES)}
#: (feature, crossed with each genre of the item)
GENRE_CROSSES = ("user_id", "age_bucket", "occupation", "gender")
#: (item feature, user feature)
ITEM_CROSSES = (("item_id", "age_bucket"), ("item_id", "gender"), ("item_id", "occupation"))
_MULT = 2654435761  # Knuth's multiplicative hash constant


@dataclass(frozen=True)
class WideDeepConfig:
    embedding_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)
    hash_buckets: int = 1 << 18
    dropout: float = 0.0
    objective: str = "implicit"  # "implicit" (BCE on 0/1 labels) or "rating" (MSE on ratings)
    epochs: int = 2
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-6
    seed: int = 0
    sampling: NegativeSampling = field(default_factory=NegativeSampling)


class WideDeepModule(nn.Module):
    genre_ids: torch.Tensor

    def __init__(self, cardinalities: list[int], n_genres: int, config: WideDeepConfig) -> None:
        super().__init__()
        d = config.embedding_dim
        self.n_genres = n_genres
        self.buckets = config.hash_buckets
        self.cardinalities = list(cardinalities)
        self.wide = nn.Embedding(config.hash_buckets, 1)
        nn.init.zeros_(self.wide.weight)
        self.register_buffer("genre_ids", torch.arange(n_genres, dtype=torch.int64))
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c in cardinalities)
        for table in self.embeddings:
            assert isinstance(table, nn.Embedding)
            nn.init.normal_(table.weight, std=0.05)
        self.genre = nn.Linear(n_genres, d, bias=False)
        self.dense = nn.Linear(len(DENSE_FEATURES), d)
        widths = [d * (len(cardinalities) + 2), *config.hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
                if config.dropout > 0:
                    layers.append(nn.Dropout(config.dropout))
        self.deep = nn.Sequential(*layers)

    def _bucket(self, key: torch.Tensor, cross: int) -> torch.Tensor:
        return torch.remainder(key * _MULT + cross * 1_000_003, self.buckets)

    def wide_logit(self, sparse: torch.Tensor, genres: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(sparse.shape[0], dtype=genres.dtype, device=genres.device)
        for c, name in enumerate(GENRE_CROSSES):
            key = sparse[:, _COL[name]].unsqueeze(1) * self.n_genres + self.genre_ids  # (B, G)
            w = self.wide(self._bucket(key, c))[..., 0]
            total = total + (w * genres).sum(dim=1)
        for c, (item, other) in enumerate(ITEM_CROSSES, start=len(GENRE_CROSSES)):
            key = sparse[:, _COL[item]] * self.cardinalities[_COL[other]] + sparse[:, _COL[other]]
            total = total + self.wide(self._bucket(key, c))[:, 0]
        return total

    def forward(self, sparse: torch.Tensor, genres: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """sparse (B, S) int64, genres (B, G), dense (B, D) -> (B,) logits."""
        parts = [table(sparse[:, i]) for i, table in enumerate(self.embeddings)]
        parts += [self.genre(genres), torch.relu(self.dense(dense))]
        return self.deep(torch.cat(parts, dim=1))[:, 0] + self.wide_logit(sparse, genres)


def train_wide_deep(
    batch: EncodedBatch,
    targets: np.ndarray,
    cardinalities: list[int],
    config: WideDeepConfig,
    ctx: TrainContext | None = None,
) -> WideDeepModule:
    """`targets`: 0/1 labels for the implicit objective (ranker_examples), centred ratings for the rating
    objective (rating_examples)."""
    if config.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {config.objective!r}")
    set_seed(config.seed)
    model = WideDeepModule(cardinalities, batch.genres.shape[1], config)
    fit_ranking_module(model, batch, targets, config, config.objective, ctx, name="wide_deep")
    return model


class WideDeepRecommender(RankerRecommender):
    """Wide & Deep over a retriever's candidates (see RankerRecommender; the two-tower model unless another is
    given); `predict_ratings` with objective="rating"."""

    def __init__(
        self,
        config: WideDeepConfig | None = None,
        retriever: Recommender | None = None,
        n_candidates: int = 500,
        fit_retriever: bool = True,
        ctx: TrainContext | None = None,
    ) -> None:
        cfg = config or WideDeepConfig()
        if retriever is None:  # the served pipeline's retriever
            retriever = TwoTowerRecommender(TwoTowerConfig(seed=cfg.seed), ctx)
        super().__init__(
            lambda cards, n_genres: WideDeepModule(cards, n_genres, cfg),
            cfg,
            cfg.objective,
            retriever,
            cfg.sampling,
            n_candidates,
            fit_retriever,
            ctx,
        )
        self.name = "wide_deep" if cfg.objective == "implicit" else "wide_deep_rating"
