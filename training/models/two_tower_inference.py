"""A trained two-tower model put to use: catalogue and cold-item vectors, every user's query vector, the query
tower as ONNX for the candidate service, and the recommender the evaluation harness measures."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from artifacts.tower_inputs import QUERY_INPUTS, QUERY_OUTPUT, genre_multi_hot, title_tokens, year_buckets
from training.data.interactions import Interactions
from training.loop import TrainContext
from training.models.history import latest_histories
from training.models.two_tower import TwoTowerConfig, TwoTowerModel, train_two_tower


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
