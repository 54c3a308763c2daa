"""Two-tower retrieval in the style of YouTube DNN (Covington et al., 2016; Yi et al., 2019).

Query tower: user id, demographics (age bucket, gender, occupation), request context (hour, weekday,
device) and an encoder over the user's most recent items ("mean", "gru", "lstm" or a causal "transformer").
Item tower: item id, genres, release-year bucket and a hashed bag of title words, so that an item never seen
in training still gets an embedding from its content (item ids are dropped at random while training, so the
content path learns to stand alone).

Training: every interaction is a target, with the user's items strictly before it (by timestamp) as history;
sampled softmax over in-batch negatives (plus optional uniform random ones) with log-Q correction.

Input conventions (also those of the ONNX query tower): user and item rows are the `Interactions` rows with
-1 for unknown; categorical features are vocabulary indices with 0 for unknown; history is right-padded and
only its first `length` entries are read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from artifacts.tower_inputs import (
    AGE_BUCKETS,
    DEVICES,
    GENDERS,
    YEAR_EDGES,
    context_indices,
    genre_multi_hot,
    title_tokens,
    year_buckets,
)
from training.data.interactions import Interactions
from training.loop import Batch, EpochLoop, LocalContext, TrainContext, each_batch, set_seed, unwrap
from training.models.history import ENCODERS, HistoryEncoder, sequence_examples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwoTowerConfig:
    dim: int = 64
    user_dim: int = 64
    side_dim: int = 16  # demographics, context, year
    hidden: tuple[int, ...] = (256,)
    encoder: str = "mean"
    history_len: int = 30
    transformer_layers: int = 1
    transformer_heads: int = 2
    title_buckets: int = 4096
    title_tokens: int = 8
    item_id_dropout: float = 0.1
    user_id_dropout: float = 0.0
    context_dropout: float = 0.5
    dropout: float = 0.1
    normalize: bool = True
    temperature: float = 0.05
    logq_correction: bool = True
    random_negatives: int = 0  # uniform extra negatives (mixed negative sampling); 1024 measured no better
    epochs: int = 6
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0


# --- feature encoding --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoTowerVocab:
    occupations: tuple[str, ...]
    genres: tuple[str, ...]

    def demographics(self, age_bucket: Sequence[int], gender: Sequence[str], occupation: Sequence[str]) -> np.ndarray:
        """(n, 3) indices of age bucket, gender, occupation (0 = unknown)."""
        age_pos = {a: i + 1 for i, a in enumerate(AGE_BUCKETS)}
        gender_pos = {g: i + 1 for i, g in enumerate(GENDERS)}
        occ_pos = {o: i + 1 for i, o in enumerate(self.occupations)}
        return np.array(
            [
                [age_pos.get(int(a), 0), gender_pos.get(str(g), 0), occ_pos.get(str(o), 0)]
                for a, g, o in zip(age_bucket, gender, occupation, strict=True)
            ],
            dtype=np.int64,
        ).reshape(-1, 3)


# --- towers ------------------------------------------------------------------------------------------------------


def _tower_mlp(width: int, hidden: tuple[int, ...], dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, dim))
    return nn.Sequential(*layers)


class QueryTower(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_occupations: int, config: TwoTowerConfig) -> None:
        super().__init__()
        s = config.side_dim
        self.normalize = config.normalize
        self.user = nn.Embedding(n_users + 1, config.user_dim)
        nn.init.normal_(self.user.weight, std=0.05)
        self.age = nn.Embedding(len(AGE_BUCKETS) + 1, s)
        self.gender = nn.Embedding(len(GENDERS) + 1, s)
        self.occupation = nn.Embedding(n_occupations + 1, s)
        self.hour = nn.Embedding(25, s)
        self.weekday = nn.Embedding(8, s)
        self.device = nn.Embedding(len(DEVICES), s)
        self.history = HistoryEncoder(
            n_items,
            config.dim,
            config.encoder,
            config.history_len,
            config.transformer_layers,
            config.transformer_heads,
            config.dropout,
        )
        self.mlp = _tower_mlp(config.user_dim + 6 * s + config.dim, config.hidden, config.dim, config.dropout)

    def forward(
        self,
        user: torch.Tensor,
        demographics: torch.Tensor,
        context: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
    ) -> torch.Tensor:
        """user (B,), demographics (B, 3), context (B, 3), history (B, L), history_length (B,) -> (B, dim)."""
        parts = [
            self.user((user + 1).clamp(min=0)),
            self.age(demographics[:, 0]),
            self.gender(demographics[:, 1]),
            self.occupation(demographics[:, 2]),
            self.hour(context[:, 0]),
            self.weekday(context[:, 1]),
            self.device(context[:, 2]),
            self.history(history, history_length),
        ]
        q = self.mlp(torch.cat(parts, dim=1))
        return F.normalize(q, dim=1) if self.normalize else q


class ItemTower(nn.Module):
    """Item embeddings from id and content; the catalogue's content is held in buffers (row-aligned)."""

    genres: torch.Tensor
    years: torch.Tensor
    titles: torch.Tensor

    def __init__(
        self,
        genres: np.ndarray,
        years: np.ndarray,
        titles: np.ndarray,
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        n_items, n_genres = genres.shape
        s = config.side_dim
        self.normalize = config.normalize
        self.id_dropout = config.item_id_dropout
        self.id = nn.Embedding(n_items + 1, config.dim)
        nn.init.normal_(self.id.weight, std=0.05)
        self.genre = nn.Linear(n_genres, config.dim, bias=False)
        self.year = nn.Embedding(len(YEAR_EDGES) + 2, s)
        self.title = nn.Embedding(config.title_buckets, config.dim, padding_idx=0)
        nn.init.normal_(self.title.weight, std=0.05)
        with torch.no_grad():
            self.title.weight[0].zero_()
        self.register_buffer("genres", torch.from_numpy(genres.astype(np.float32)))
        self.register_buffer("years", torch.from_numpy(years.astype(np.int64)))
        self.register_buffer("titles", torch.from_numpy(titles.astype(np.int64)))
        self.mlp = _tower_mlp(3 * config.dim + s, config.hidden, config.dim, config.dropout)

    def encode(
        self, ids: torch.Tensor, genres: torch.Tensor, years: torch.Tensor, titles: torch.Tensor
    ) -> torch.Tensor:
        """ids (N,) id-table indices (row + 1, 0 = unknown), genres (N, G), year buckets (N,), title tokens (N, T)."""
        words = (titles > 0).sum(dim=1, keepdim=True).clamp(min=1).to(genres.dtype)
        parts = [self.id(ids), self.genre(genres), self.year(years), self.title(titles).sum(dim=1) / words]
        v = self.mlp(torch.cat(parts, dim=1))
        return F.normalize(v, dim=1) if self.normalize else v

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(N,) item rows of the catalogue -> (N, dim)."""
        ids = items + 1
        if self.training and self.id_dropout > 0:
            ids = torch.where(torch.rand(ids.shape, device=ids.device) < self.id_dropout, torch.zeros_like(ids), ids)
        return self.encode(ids, self.genres[items], self.years[items], self.titles[items])


class TwoTowerModel(nn.Module):
    demographics: torch.Tensor

    def __init__(
        self,
        vocab: TwoTowerVocab,
        n_users: int,
        user_demographics: np.ndarray,
        item_genres: np.ndarray,
        item_years: np.ndarray,
        item_titles: np.ndarray,
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = config
        self.query = QueryTower(n_users, item_genres.shape[0], len(vocab.occupations), config)
        self.item = ItemTower(item_genres, item_years, item_titles, config)
        self.register_buffer("demographics", torch.from_numpy(user_demographics.astype(np.int64)))

    @property
    def n_items(self) -> int:
        return int(self.item.genres.shape[0])

    def forward(
        self,
        user: torch.Tensor,
        user_id: torch.Tensor,
        context: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
        items: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query vectors (B, dim) of known users `user` (rows; `user_id` is what the id embedding sees, -1 where
        dropped) and item vectors (N, dim) of catalogue rows `items`."""
        unique, inverse = torch.unique(items, return_inverse=True)  # each distinct item through the tower once
        q = self.query(user_id, self.demographics[user], context, history, history_length)
        return q, self.item(unique)[inverse]


def build_two_tower(data: Interactions, config: TwoTowerConfig) -> TwoTowerModel:
    """The model for the users and items of `data` (features from its profile tables)."""
    _, genre_vocab = data.genre_matrix()
    vocab = TwoTowerVocab(
        occupations=tuple(sorted({str(o) for o in data.users["occupation"]})), genres=tuple(genre_vocab)
    )
    users = data.users
    demo = vocab.demographics(
        users["age_bucket"].astype(int).tolist(), users["gender"].astype(str).tolist(), users["occupation"].tolist()
    )
    items = data.items
    return TwoTowerModel(
        vocab,
        data.n_users,
        demo,
        genre_multi_hot([list(g) for g in items["genres"]], vocab.genres),
        year_buckets(items["year"].to_numpy()),
        title_tokens(items["title"].astype(str).tolist(), config.title_buckets, config.title_tokens),
        config,
    )


# --- training ----------------------------------------------------------------------------------------------------


def sampled_softmax_loss(
    q: torch.Tensor,
    v: torch.Tensor,
    targets: torch.Tensor,
    candidates: torch.Tensor,
    log_q: torch.Tensor | None,
    n_items: int,
    temperature: float,
) -> torch.Tensor:
    """Softmax of each query's target among the candidates: the batch's B targets (in-batch negatives)
    followed by uniformly drawn items. `v` holds the candidates' vectors (N, dim).

    `log_q`: log of each item's share of the training targets, its probability of being an in-batch
    candidate; subtracting it (and log(n_random / n_items) from the uniform ones) removes the popularity bias
    of in-batch negatives. Candidates that are the row's own target item are masked, except the positive.
    """
    b, n = q.shape[0], v.shape[0]
    logits = q @ v.T / temperature  # (B, N)
    if log_q is not None:
        n_random = n - b
        correction = torch.cat(
            [log_q[candidates[:b]] + math.log(b), log_q.new_full((n_random,), math.log(max(n_random, 1) / n_items))]
        )
        logits = logits - correction.unsqueeze(0)
    positive = torch.eye(b, n, dtype=torch.bool, device=q.device)
    collide = (candidates.unsqueeze(0) == targets.unsqueeze(1)) & ~positive
    logits = logits.masked_fill(collide, float("-inf"))
    return F.cross_entropy(logits, torch.arange(b, device=q.device))


def train_two_tower(data: Interactions, config: TwoTowerConfig, ctx: TrainContext | None = None) -> TwoTowerModel:
    """Trains on every interaction of `data` as a target with the user's earlier items as history."""
    if config.encoder not in ENCODERS:
        raise ValueError(f"unknown history encoder {config.encoder!r}; expected one of {ENCODERS}")
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    model = build_two_tower(data, config)
    n_items = data.n_items
    ex = sequence_examples(data, config.history_len)
    users = torch.from_numpy(ex.users)
    targets = torch.from_numpy(ex.targets)
    history = torch.from_numpy(ex.history)
    lengths = torch.from_numpy(ex.lengths)
    context = torch.from_numpy(context_indices(ex.timestamps, len(ex.users)))
    counts = torch.from_numpy(np.bincount(data.item_idx, minlength=n_items).astype(np.float32))
    log_q = torch.log(counts.clamp(min=1.0) / counts.sum().clamp(min=1.0)) if config.logq_correction else None
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def loss(batch: Batch) -> torch.Tensor:
        idx = batch.idx
        b = len(idx)
        u = users[idx]
        # Dropped context and user ids teach the towers the "unknown" slots used at serving time.
        ctx_b = context[idx] * (torch.from_numpy(rng.random(b)) >= config.context_dropout).unsqueeze(1).long()
        uid = torch.where(torch.from_numpy(rng.random(b)) < config.user_id_dropout, torch.full_like(u, -1), u)
        rand = torch.from_numpy(rng.integers(0, n_items, config.random_negatives))
        cand = torch.cat([targets[idx], rand])
        q, v = trained(u, uid, ctx_b, history[idx], lengths[idx], cand)
        return sampled_softmax_loss(q, v, targets[idx], cand, log_q, n_items, config.temperature)

    EpochLoop("two_tower", config.epochs, config.batch_size, ctx).run(
        trained, opt, len(ex.users), rng, each_batch(loss)
    )
    result = unwrap(trained)
    assert isinstance(result, TwoTowerModel)
    result.eval()
    return result
