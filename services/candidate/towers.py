"""The two-tower model's towers at request time (onnxruntime, one intra-op thread each).

The query tower turns what a user did a second ago into a query vector without retraining; the item tower
embeds an item added at runtime from its content. Both encode their inputs exactly as training does
(artifacts/tower_inputs.py), reading every vocabulary from the bundle contract rather than hard-coding it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.bundle import ITEM_TOWER_COMPONENT, QUERY_TOWER_COMPONENT
from artifacts.tower_inputs import (
    AGE_BUCKETS,
    DEVICES,
    GENDERS,
    ITEM_INPUTS,
    ITEM_OUTPUT,
    QUERY_INPUTS,
    QUERY_OUTPUT,
    YEAR_EDGES,
    context_indices,
    genre_multi_hot,
    title_tokens,
    year_buckets,
)
from recsys.common.v1 import common_pb2


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _vocab(contract: Mapping[str, Any]) -> dict[str, Any]:
    vocab = dict(contract.get("vocab") or {})
    for key in ("age_buckets", "genders", "occupations", "devices", "genres"):
        if key not in vocab and key in contract:
            vocab[key] = contract[key]
    return vocab


def _check_inputs(session: Any, want: Sequence[str], component: str) -> None:
    have = [i.name for i in session.get_inputs()]
    if sorted(have) != sorted(want):
        raise ValueError(f"{component}: the ONNX model takes {have}; its contract says {list(want)}")


class QueryTower:
    """(user row, demographics, context, history rows) -> one query vector."""

    def __init__(self, path: Path, contract: Mapping[str, Any], threads: int = 1) -> None:
        self.inputs = tuple(contract.get("inputs") or QUERY_INPUTS)
        self.output = str(contract.get("output") or QUERY_OUTPUT)
        self.history_len = int(contract["history_len"])
        self.dim = int(contract["dim"])
        vocab = _vocab(contract)
        self.age_pos = {int(a): i + 1 for i, a in enumerate(vocab.get("age_buckets", AGE_BUCKETS))}
        self.gender_pos = {str(g): i + 1 for i, g in enumerate(vocab.get("genders", GENDERS))}
        self.occupation_pos = {str(o): i + 1 for i, o in enumerate(vocab.get("occupations", ()))}
        self.device_pos = {str(d).lower(): i for i, d in enumerate(vocab.get("devices", DEVICES))}
        self.session = _session(path, threads)
        _check_inputs(self.session, self.inputs, QUERY_TOWER_COMPONENT)
        self._lock = threading.Lock()  # one run at a time: one intra-op thread is the point

    def demographics(self, features: common_pb2.UserFeatures | None) -> np.ndarray:
        """(3,) age bucket, gender, occupation indices as TwoTowerVocab.demographics (0 = unknown)."""
        if features is None:
            return np.zeros(3, dtype=np.int64)
        return np.array(
            [
                self.age_pos.get(int(features.age_bucket), 0),
                self.gender_pos.get(features.gender, 0),
                self.occupation_pos.get(features.occupation, 0),
            ],
            dtype=np.int64,
        )

    def context(self, unix_seconds: int | None, device: int) -> np.ndarray:
        """(3,) hour, weekday and device indices as `context_indices` encodes them for training."""
        name = common_pb2.DeviceType.Name(device).removeprefix("DEVICE_TYPE_").lower() if device else "unknown"
        known_time = unix_seconds is not None and unix_seconds > 0
        return context_indices(np.array([unix_seconds]) if known_time else None, 1, self.device_pos.get(name, 0))[0]

    # A user the model has not seen is fed as -1: QueryTower looks up (user + 1).clamp(min=0), so -1 reaches
    # the id table's row 0. (The contract's `unknown_user`, if any, names an id-table row, not an input.)
    UNKNOWN_USER = -1

    def encode(
        self,
        user_row: int,
        demographics: np.ndarray,
        context: np.ndarray,
        recent_rows: Sequence[int],
    ) -> np.ndarray:
        """The query vector (dim,). `recent_rows`: item rows of the model, most recent first."""
        latest = list(recent_rows)[: self.history_len][::-1]  # the model reads oldest first
        history = np.full((1, self.history_len), -1, dtype=np.int64)
        history[0, : len(latest)] = latest
        feeds = {
            "user": np.array([user_row], dtype=np.int64),
            "demographics": demographics.reshape(1, 3).astype(np.int64),
            "context": context.reshape(1, 3).astype(np.int64),
            "history": history,
            "history_length": np.array([len(latest)], dtype=np.int64),
        }
        with self._lock:
            (out,) = self.session.run([self.output], {name: feeds[name] for name in self.inputs})
        return np.asarray(out[0], dtype=np.float32)


class ItemTower:
    """Item content -> item vectors, for items added to the catalogue at runtime."""

    def __init__(self, path: Path, contract: Mapping[str, Any], threads: int = 1) -> None:
        self.inputs = tuple(contract.get("inputs") or ITEM_INPUTS)
        self.output = str(contract.get("output") or ITEM_OUTPUT)
        vocab = _vocab(contract)
        self.genres = tuple(str(g) for g in vocab.get("genres", contract.get("genre_vocab", ())))
        self.title_buckets = int(contract["title_buckets"])
        self.title_tokens = int(contract["title_tokens"])
        self.dim = int(contract["dim"]) if "dim" in contract else None
        self.year_edges = tuple(int(y) for y in contract["year_edges"]) if "year_edges" in contract else None
        self.session = _session(path, threads)
        _check_inputs(self.session, self.inputs, ITEM_TOWER_COMPONENT)
        self._lock = threading.Lock()

    def embed(
        self, ids: Sequence[int], titles: Sequence[str], years: Sequence[int], genres: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """(n, dim) vectors. `ids`: id-table indices (catalogue row + 1 of a trained item, 0 for a new one)."""
        feeds = {
            "ids": np.asarray(ids, dtype=np.int64),
            "genres": genre_multi_hot(genres, self.genres),
            "years": year_buckets(np.asarray(years), self.year_edges or YEAR_EDGES),
            "titles": title_tokens(titles, self.title_buckets, self.title_tokens),
        }
        with self._lock:
            (out,) = self.session.run([self.output], {name: feeds[name] for name in self.inputs})
        return np.asarray(out, dtype=np.float32)
