"""Rankers over the feature contract of artifacts/ranker_features.py, and what they share.

Every ranker takes `forward(sparse (B, S) int64, genres (B, G) float32, dense (B, D) float32) -> (B,) logits`,
so training/export.py turns any of them into the ONNX model both ranking backends serve. This module holds
the MLP ranker and the pieces the other rankers (training/models/dlrm.py, training/models/wide_deep.py)
reuse: the features of an `Interactions`, training examples with hard and random negatives, the training
loop that owns the loss, and the Recommender adapter that ranks a retriever's candidates.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from artifacts import ranker_features as rf
from artifacts.ranker_features import DENSE_FEATURES, EncodedBatch
from training.data.interactions import Interactions
from training.data.offline import RECENT_POPULARITY_WEEKS
from training.loop import Batch, EpochLoop, LocalContext, TrainContext, each_batch, set_seed, unwrap
from training.models.base import Recommender

log = logging.getLogger(__name__)

OBJECTIVES = ("implicit", "rating")


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


class TrainingSettings(Protocol):
    """The optimisation fields every ranker config has."""

    @property
    def epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def seed(self) -> int: ...


def fit_ranking_module(
    model: nn.Module,
    batch: EncodedBatch,
    targets: np.ndarray,
    config: TrainingSettings,
    objective: str = "implicit",
    ctx: TrainContext | None = None,
    name: str = "ranker",
) -> nn.Module:
    """Trains `model` in place: binary cross-entropy on 0/1 labels ("implicit") or squared error on
    centred ratings ("rating"). Returns the (unwrapped) module."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    ctx = ctx or LocalContext()
    rng = set_seed(config.seed)
    trained = ctx.prepare_model(model)
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sparse = torch.from_numpy(batch.sparse)
    genres = torch.from_numpy(batch.genres)
    dense = torch.from_numpy(batch.dense)
    y = torch.from_numpy(targets.astype(np.float32))
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if objective == "implicit" else nn.MSELoss()

    def loss(batch: Batch) -> torch.Tensor:
        idx = batch.idx
        return loss_fn(trained(sparse[idx], genres[idx], dense[idx]), y[idx])

    EpochLoop(name, config.epochs, config.batch_size, ctx).run(trained, opt, len(targets), rng, each_batch(loss))
    module = unwrap(trained)
    module.eval()
    return module


def train_ranker(
    batch: EncodedBatch,
    labels: np.ndarray,
    cardinalities: list[int],
    config: RankerConfig,
    ctx: TrainContext | None = None,
) -> MlpRankerModule:
    set_seed(config.seed)
    model = MlpRankerModule(cardinalities, batch.genres.shape[1], config)
    fit_ranking_module(model, batch, labels, config, "implicit", ctx, name="mlp_ranker")
    return model


# --- features and examples from an Interactions ---------------------------------------------------------------


@dataclass(frozen=True)
class RankerFeatures:
    """The ranker's inputs for the users and items of an `Interactions` (rows aligned with its vocabularies)."""

    contract: rf.RankerContract
    items: rf.EncodedItems
    user_sparse: np.ndarray  # int64 (n_users, 4): user_id, age_bucket, gender, occupation indices
    user_dense: np.ndarray  # float32 (n_users, 2) raw USER_DENSE

    def encode(
        self,
        users: np.ndarray,
        items: np.ndarray,
        context: np.ndarray | None = None,
        as_new_user: np.ndarray | None = None,
    ) -> EncodedBatch:
        """Inputs for (user row, item row) pairs; `context` (n, 2) hour/weekday indices, 0 ("unknown") if None.
        `as_new_user` (n,) bool: those pairs show the user as serving sees a user without history (the
        unknown id, no interactions, the global mean rating), demographics kept."""
        ctx = np.zeros((len(users), 2), dtype=np.int64) if context is None else context
        user_sparse, user_dense = self.user_sparse[users], self.user_dense[users]
        if as_new_user is not None and as_new_user.any():
            user_sparse[as_new_user, 0] = 0
            user_dense[as_new_user] = rf.user_dense(np.zeros(1), np.zeros(1), self.contract.global_mean_rating)
        return rf.encode_batch(self.contract, user_sparse, user_dense, ctx, self.items, np.asarray(items))


def build_ranker_features(data: Interactions) -> RankerFeatures:
    """Contract, item encodings and user rows computed from `data` (the training interactions), the way
    training/pipeline.py computes them for the bundle."""
    n_users, n_items = data.n_users, data.n_items
    ratings = data.ratings.astype(np.float64)
    global_mean = float(ratings.mean()) if len(ratings) else 3.5
    popularity = np.bincount(data.item_idx, minlength=n_items)
    item_mean = np.bincount(data.item_idx, weights=ratings, minlength=n_items) / np.maximum(popularity, 1)
    ts_max = int(data.timestamps.max()) if len(data) else 0
    recent_mask = data.timestamps > ts_max - RECENT_POPULARITY_WEEKS * 7 * 86400
    recent = np.bincount(data.item_idx[recent_mask], minlength=n_items)
    year = data.items["year"].to_numpy(dtype=np.int64)
    user_count = np.bincount(data.user_idx, minlength=n_users)
    user_mean = np.bincount(data.user_idx, weights=ratings, minlength=n_users) / np.maximum(user_count, 1)
    item_dense_raw = rf.item_dense(popularity, item_mean, recent, year, global_mean)
    user_dense_raw = rf.user_dense(user_count, user_mean, global_mean)
    _, genre_vocab = data.genre_matrix()
    user_ids = [str(u) for u in data.user_ids]
    item_ids = [str(i) for i in data.item_ids]
    contract = rf.build_contract(
        # Only users with training interactions get an id slot: one without any would keep an untrained
        # embedding, while the unknown slot (0) is trained by `NegativeSampling.new_user_dropout`.
        [u for u, n in zip(user_ids, user_count, strict=True) if n > 0],
        item_ids,
        sorted({str(o) for o in data.users["occupation"]}),
        genre_vocab,
        np.concatenate([user_dense_raw[data.user_idx], item_dense_raw[data.item_idx]], axis=1),
        global_mean,
    )
    encoded_items = rf.encode_items(
        contract, item_ids, [list(g) for g in data.items["genres"]], popularity, item_mean, recent, year
    )
    users = data.users
    user_sparse = np.stack(
        [
            contract.lookup("user_id", np.asarray(user_ids)),
            contract.lookup("age_bucket", users["age_bucket"].astype(str).to_numpy()),
            contract.lookup("gender", users["gender"].astype(str).to_numpy()),
            contract.lookup("occupation", users["occupation"].astype(str).to_numpy()),
        ],
        axis=1,
    )
    return RankerFeatures(contract, encoded_items, user_sparse, user_dense_raw)


def interaction_context(timestamps: np.ndarray) -> np.ndarray:
    """(n, 2) hour/weekday vocabulary indices of epoch-second timestamps (UTC)."""
    ts = pd.to_datetime(pd.Series(timestamps), unit="s", utc=True)
    return rf.encode_context(ts.dt.hour.to_numpy(), ts.dt.weekday.to_numpy())


@dataclass(frozen=True)
class NegativeSampling:
    """How implicit-feedback examples get their negatives.

    Each positive gets `negatives` items the user has not interacted with: a `hard_fraction` share drawn from
    the user's top `hard_pool` retrieval candidates (what the ranker must tell apart when serving), the rest at
    random with probability proportional to popularity**`popularity_alpha` (0 = uniform). `context_dropout`
    of the examples get the "unknown" context, so that scoring without a request context is in-distribution;
    `new_user_dropout` of the examples from each user's first `new_user_window` interactions (by time) show
    their user as a new one (unknown id, no interactions), so that the ranker learns what users without history
    pick (from demographics, context and item features only) instead of scoring them through an embedding that
    training never touched.

    Defaults are the best measured on MovieLens-100K (random split): uniform negatives only. A retriever's top
    unseen items are often the user's held-out positives, and popularity-shaped negatives teach the ranker to
    demote popular items, both of which cost NDCG there.
    """

    negatives: int = 8
    hard_fraction: float = 0.0
    hard_pool: int = 200
    popularity_alpha: float = 0.0
    context_dropout: float = 0.5
    new_user_dropout: float = 0.5
    new_user_window: int = 10


def seen_keys(data: Interactions) -> np.ndarray:
    """Sorted unique user*n_items+item keys, for fast membership tests."""
    return np.unique(data.user_idx * data.n_items + data.item_idx)


def top_unseen(scores: np.ndarray, data: Interactions, users: np.ndarray, k: int) -> np.ndarray:
    """(len(users), k) item rows with the highest scores among items the users have no interaction with."""
    s = np.array(scores, dtype=np.float32, copy=True)
    pos = {int(u): r for r, u in enumerate(users)}
    sel = np.isin(data.user_idx, users)
    rows = np.fromiter((pos[int(u)] for u in data.user_idx[sel]), dtype=np.int64, count=int(sel.sum()))
    s[rows, data.item_idx[sel]] = -np.inf
    k = min(k, s.shape[1])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def ranker_examples(
    features: RankerFeatures,
    data: Interactions,
    hard_pool: np.ndarray | None,
    sampling: NegativeSampling,
    seed: int = 0,
) -> tuple[EncodedBatch, np.ndarray]:
    """Implicit-feedback examples: every interaction is a positive (with its context), followed by the
    sampled negatives; returns the encoded batch and 0/1 labels. `hard_pool`: (n_users, P) candidate rows
    from a retriever (seen items excluded), or None for random negatives only."""
    rng = np.random.default_rng(seed)
    n_items = data.n_items
    k = sampling.negatives
    n_hard = 0 if hard_pool is None else round(k * sampling.hard_fraction)
    n_rand = k - n_hard
    u = data.user_idx
    negs = []
    if n_hard and hard_pool is not None:
        cols = rng.integers(0, hard_pool.shape[1], (len(u), n_hard))
        negs.append(hard_pool[u[:, None], cols])
    if n_rand:
        p = (data.item_popularity().astype(np.float64) + 1.0) ** sampling.popularity_alpha
        p /= p.sum()
        keys = seen_keys(data)
        rand = rng.choice(n_items, size=(len(u), n_rand), p=p)
        for _ in range(5):  # redraw the few that hit a positive
            hit = np.isin(u[:, None] * n_items + rand, keys)
            if not hit.any():
                break
            rand[hit] = rng.choice(n_items, size=int(hit.sum()), p=p)
        negs.append(rand)
    neg_items = np.concatenate(negs, axis=1).reshape(-1) if negs else np.zeros(0, dtype=np.int64)
    all_users = np.concatenate([u, np.repeat(u, k)])
    all_items = np.concatenate([data.item_idx, neg_items])
    labels = np.concatenate([np.ones(len(u)), np.zeros(len(neg_items))]).astype(np.float32)
    context = interaction_context(data.timestamps)
    context = np.concatenate([context, np.repeat(context, k, axis=0)])
    context[rng.random(len(context)) < sampling.context_dropout] = 0
    # A user's first interactions, shown as a new user's: what people rate before they have a history
    # (MovieLens' sign-up asks new users to rate popular films first) is what the unknown-user slot learns.
    order = np.lexsort((data.timestamps, u))
    by_user = u[order]
    starts = np.searchsorted(by_user, by_user)  # first position of each example's user in the sorted order
    position = np.empty(len(u), dtype=np.int64)
    position[order] = np.arange(len(u)) - starts
    early = (position < sampling.new_user_window) & (rng.random(len(u)) < sampling.new_user_dropout)
    as_new_user = np.concatenate([early, np.repeat(early, k)])
    return features.encode(all_users, all_items, context, as_new_user), labels


def rating_examples(
    features: RankerFeatures, data: Interactions, context_dropout: float = 0.5, seed: int = 0
) -> tuple[EncodedBatch, np.ndarray]:
    """Explicit-feedback examples: the interactions with their ratings centred on the global mean."""
    rng = np.random.default_rng(seed)
    context = interaction_context(data.timestamps)
    context[rng.random(len(context)) < context_dropout] = 0
    targets = data.ratings.astype(np.float32) - np.float32(features.contract.global_mean_rating)
    return features.encode(data.user_idx, data.item_idx, context), targets


# --- the Recommender adapter of a ranker -----------------------------------------------------------------------


class RankerRecommender:
    """Two stages under the evaluation protocol: the retriever's top `n_candidates` unseen items per user,
    ordered by the ranker (scored with the "unknown" context); every other item scores below all candidates.

    `make_module(cardinalities, n_genres)` builds the ranker; `train(module, batch, targets, ctx)` trains it.
    With `fit_retriever=False` the retriever is used as given (already fitted on the same training data).
    """

    name = "ranker"
    NON_CANDIDATE = -1.0e4

    def __init__(
        self,
        make_module: Callable[[list[int], int], nn.Module],
        config: TrainingSettings,
        objective: str,
        retriever: Recommender,
        sampling: NegativeSampling,
        n_candidates: int = 500,
        fit_retriever: bool = True,
        ctx: TrainContext | None = None,
    ) -> None:
        self.make_module = make_module
        self.config = config
        self.objective = objective
        self.retriever = retriever
        self.sampling = sampling
        self.n_candidates = n_candidates
        self.fit_retriever = fit_retriever
        self.ctx = ctx
        self.module: nn.Module | None = None
        self.features: RankerFeatures | None = None
        self.train_data: Interactions | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        if self.fit_retriever:
            self.retriever.fit(train, valid)
        self.train_data = train
        self.features = build_ranker_features(train)
        set_seed(self.config.seed)
        self.module = self.make_module(self.features.contract.cardinalities(), len(self.features.contract.genres))
        if self.objective == "rating":
            batch, targets = rating_examples(self.features, train, self.sampling.context_dropout, self.config.seed)
        else:
            pool = None
            if self.sampling.hard_fraction > 0:
                users = np.arange(train.n_users)
                pool = top_unseen(self.retriever.score(users), train, users, self.sampling.hard_pool)
            batch, targets = ranker_examples(self.features, train, pool, self.sampling, self.config.seed)
        fit_ranking_module(self.module, batch, targets, self.config, self.objective, self.ctx, name=self.name)

    def _require(self) -> tuple[nn.Module, RankerFeatures, Interactions]:
        if self.module is None or self.features is None or self.train_data is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.module, self.features, self.train_data

    def candidates(self, users: np.ndarray) -> np.ndarray:
        _, _, train = self._require()
        return top_unseen(self.retriever.score(users), train, users, self.n_candidates)

    def rank_scores(self, users: np.ndarray, items: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Ranker outputs (logits, or centred ratings for the rating objective) of (user row, item row) pairs."""
        module, features, _ = self._require()
        out = np.empty(len(users), dtype=np.float32)
        module.eval()
        with torch.no_grad():
            for start in range(0, len(users), chunk):
                b = features.encode(users[start : start + chunk], items[start : start + chunk])
                out[start : start + chunk] = module(
                    torch.from_numpy(b.sparse), torch.from_numpy(b.genres), torch.from_numpy(b.dense)
                ).numpy()
        return out

    def score(self, users: np.ndarray) -> np.ndarray:
        _, _, train = self._require()
        users = np.asarray(users, dtype=np.int64)
        cand = self.candidates(users)
        flat_users = np.repeat(users, cand.shape[1])
        ranked = self.rank_scores(flat_users, cand.reshape(-1)).reshape(cand.shape)
        out = np.full((len(users), train.n_items), self.NON_CANDIDATE, dtype=np.float32)
        np.put_along_axis(out, cand, ranked, axis=1)
        return out

    def predict_ratings(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user row, item row) pairs; needs the "rating" objective."""
        if self.objective != "rating":
            raise RuntimeError(f"{self.name} was trained on implicit feedback; use objective='rating'")
        _, features, _ = self._require()
        pred = self.rank_scores(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))
        return np.clip(pred + features.contract.global_mean_rating, 1.0, 5.0).astype(np.float32)
