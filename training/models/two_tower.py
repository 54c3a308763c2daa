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
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from artifacts.tower_inputs import (
    AGE_BUCKETS,
    DEVICES,
    GENDERS,
    QUERY_INPUTS,
    QUERY_OUTPUT,
    YEAR_EDGES,
    context_indices,
    genre_multi_hot,
    title_tokens,
    year_buckets,
)
from training.data.interactions import Interactions
from training.loop import Batch, EpochLoop, LocalContext, TrainContext, each_batch, set_seed, unwrap

log = logging.getLogger(__name__)

ENCODERS = ("mean", "gru", "lstm", "transformer")


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


def latest_histories(data: Interactions, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's most recent `max_len` items (oldest first, right-padded with -1) and their count."""
    indptr, items = data.seen_csr()
    hist = np.full((data.n_users, max_len), -1, dtype=np.int64)
    lengths = np.minimum(np.diff(indptr), max_len)
    for u in range(data.n_users):
        n = int(lengths[u])
        if n:
            hist[u, :n] = items[indptr[u + 1] - n : indptr[u + 1]]
    return hist, lengths.astype(np.int64)


@dataclass(frozen=True)
class SequenceExamples:
    """Every interaction as a target with the user's items strictly before it as history."""

    users: np.ndarray  # (n,)
    targets: np.ndarray  # (n,)
    timestamps: np.ndarray  # (n,)
    history: np.ndarray  # (n, L) item rows, right-padded with -1
    lengths: np.ndarray  # (n,)


def sequence_examples(data: Interactions, max_len: int) -> SequenceExamples:
    order = np.lexsort((data.item_idx, data.timestamps, data.user_idx))
    users, items, ts = data.user_idx[order], data.item_idx[order], data.timestamps[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=data.n_users))])[users]
    # Position of the first interaction of the same user at the same second: history ends before it.
    first_same = np.zeros(len(users), dtype=np.int64)
    new_group = np.ones(len(users), dtype=bool)
    new_group[1:] = (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])
    group_start = np.flatnonzero(new_group)
    first_same = group_start[np.cumsum(new_group) - 1]
    lengths = np.minimum(first_same - starts, max_len)
    offsets = np.arange(max_len)
    pos = first_same[:, None] - lengths[:, None] + offsets
    valid = offsets < lengths[:, None]
    history = np.where(valid, items[np.clip(pos, 0, len(items) - 1)], -1)
    return SequenceExamples(users, items, ts, history.astype(np.int64), lengths.astype(np.int64))


# --- modules -----------------------------------------------------------------------------------------------------


class CausalBlock(nn.Module):
    """Pre-norm self-attention block with a causal mask (SASRec), written out so that it exports to ONNX."""

    mask: torch.Tensor

    def __init__(self, dim: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)
        mask = torch.triu(torch.full((max_len, max_len), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, dim = x.shape[1], x.shape[2]
        dh = dim // self.heads
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q = q.reshape(-1, length, self.heads, dh).transpose(1, 2)
        k = k.reshape(-1, length, self.heads, dh).transpose(1, 2)
        v = v.reshape(-1, length, self.heads, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + self.mask[:length, :length], dim=-1)
        y = (att @ v).transpose(1, 2).reshape(-1, length, dim)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.ln2(x)))


class HistoryEncoder(nn.Module):
    """(B, L) right-padded item rows and (B,) lengths -> (B, dim); an empty history gives zeros."""

    offsets: torch.Tensor

    def __init__(self, n_items: int, dim: int, kind: str, max_len: int, layers: int, heads: int, dropout: float):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"unknown history encoder {kind!r}; expected one of {ENCODERS}")
        self.kind = kind
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.05)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.register_buffer("offsets", torch.arange(max_len, dtype=torch.int64))
        self.rnn: nn.Module | None = None
        self.blocks: nn.ModuleList | None = None
        if kind == "gru":
            self.rnn = nn.GRU(dim, dim, batch_first=True)
        elif kind == "lstm":
            self.rnn = nn.LSTM(dim, dim, batch_first=True)
        elif kind == "transformer":
            self.position = nn.Embedding(max_len, dim)
            nn.init.normal_(self.position.weight, std=0.02)
            self.blocks = nn.ModuleList(CausalBlock(dim, heads, max_len, dropout) for _ in range(layers))
            self.norm = nn.LayerNorm(dim)

    def forward(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        valid = self.offsets[: history.shape[1]].unsqueeze(0) < length.unsqueeze(1)  # (B, L)
        idx = torch.where(valid, history + 1, torch.zeros_like(history)).clamp(min=0)
        x = self.items(idx)  # padding rows are zero
        if self.kind == "mean":
            return x.sum(dim=1) / length.clamp(min=1).unsqueeze(1).to(x.dtype)
        if self.rnn is not None:
            h, _ = self.rnn(x)
        else:
            assert self.blocks is not None
            h = x + self.position.weight[: x.shape[1]].unsqueeze(0)
            for block in self.blocks:
                h = block(h)
            h = self.norm(h)
        last = (length - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, h.shape[2])
        out = h.gather(1, last)[:, 0]
        return out * (length > 0).unsqueeze(1).to(out.dtype)


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


# --- exports -----------------------------------------------------------------------------------------------------


def item_embeddings(model: TwoTowerModel) -> np.ndarray:
    """(n_items, dim) float32 item-tower vectors of the catalogue (ids and content)."""
    model.eval()
    with torch.no_grad():
        return model.item(torch.arange(model.n_items)).numpy().astype(np.float32)


def cold_item_embeddings(
    model: TwoTowerModel, titles: Sequence[str], years: Sequence[int], genres: Sequence[Sequence[str]]
) -> np.ndarray:
    """(n, dim) float32 vectors of items outside the catalogue, from their content only (unknown id)."""
    cfg = model.config
    model.eval()
    with torch.no_grad():
        v = model.item.encode(
            torch.zeros(len(titles), dtype=torch.int64),
            torch.from_numpy(genre_multi_hot(genres, model.vocab.genres)),
            torch.from_numpy(year_buckets(np.asarray(years))),
            torch.from_numpy(title_tokens(titles, cfg.title_buckets, cfg.title_tokens)),
        )
    return v.numpy().astype(np.float32)


def user_vectors(model: TwoTowerModel, history_data: Interactions, chunk: int = 4096) -> np.ndarray:
    """(n_users, dim) float32 query vectors of every known user: their latest items in `history_data` as
    history and a neutral (unknown) context."""
    hist, lengths = latest_histories(history_data, model.config.history_len)
    n = history_data.n_users
    out = np.empty((n, model.config.dim), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for start in range(0, n, chunk):
            u = torch.arange(start, min(start + chunk, n))
            q = model.query(
                u,
                model.demographics[u],
                torch.zeros(len(u), 3, dtype=torch.int64),
                torch.from_numpy(hist[start : start + chunk]),
                torch.from_numpy(lengths[start : start + chunk]),
            )
            out[start : start + chunk] = q.numpy()
    return out


def export_query_onnx(model: TwoTowerModel, path: Path) -> Path:
    """The query tower as ONNX: inputs QUERY_INPUTS (user (B,), demographics (B, 3), context (B, 3), history
    (B, history_len), history_length (B,), all int64) -> QUERY_OUTPUT (B, dim) float32; dynamic batch."""
    model.eval()
    b, length = 2, model.config.history_len
    example = (
        torch.zeros(b, dtype=torch.int64),
        torch.zeros(b, 3, dtype=torch.int64),
        torch.zeros(b, 3, dtype=torch.int64),
        torch.zeros(b, length, dtype=torch.int64),
        torch.ones(b, dtype=torch.int64),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and RNN batch-size notes
        torch.onnx.export(
            model.query,
            example,
            str(path),
            input_names=list(QUERY_INPUTS),
            output_names=[QUERY_OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in [*QUERY_INPUTS, QUERY_OUTPUT]},
            opset_version=17,
            dynamo=False,
        )
    return path


class TwoTowerRecommender:
    """Two-tower retrieval under the evaluation protocol: user vectors (train history, neutral context) against
    the item embeddings."""

    name = "two_tower"

    def __init__(self, config: TwoTowerConfig | None = None, ctx: TrainContext | None = None) -> None:
        self.config = config or TwoTowerConfig()
        self.ctx = ctx
        if self.config.encoder != "mean":
            self.name = f"two_tower_{self.config.encoder}"
        self.model: TwoTowerModel | None = None
        self.user_vecs: np.ndarray | None = None
        self.item_vecs: np.ndarray | None = None
        self.train_seconds = 0.0

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        started = time.perf_counter()
        self.model = train_two_tower(train, self.config, self.ctx)
        self.user_vecs = user_vectors(self.model, train)
        self.item_vecs = item_embeddings(self.model)
        self.train_seconds = time.perf_counter() - started

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.user_vecs is None or self.item_vecs is None:
            raise RuntimeError("two_tower is not fitted")
        return (self.user_vecs[np.asarray(users)] @ self.item_vecs.T).astype(np.float32)
