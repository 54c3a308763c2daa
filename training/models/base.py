"""What every model offers the evaluation harness: fit on interactions, score users against all items."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from training.data.interactions import Interactions


class Recommender(Protocol):
    """A model under the evaluation protocol (training/evaluation/).

    `fit` trains on `train` (and may use `valid` for early stopping or tuning, never the test set);
    `score` returns a (len(users), n_items) float32 matrix, higher meaning more relevant. The harness masks
    the users' training items itself.
    """

    name: str

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...
