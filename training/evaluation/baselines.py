"""A reference popularity baseline for the harness's own tests and as a fallback when training.models has
none: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np

from training.data.interactions import Interactions


class MostPopular:
    """score(u, i) = number of training interactions of item i (the same list for everyone)."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:
        self.counts = train.item_popularity().astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("fit the model before scoring")
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()
