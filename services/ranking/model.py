"""The in-process ranking runtime: the trained MLP ranker evaluated with NumPy.

Weights come from the bundle (exported by training/models/ranker.py with the same layer names). One
thread of BLAS is plenty at a few hundred candidates and keeps latency steady next to the event loop.
"""

from __future__ import annotations

import numpy as np

from services.ranking.features import EncodedBatch

MODEL_NAME = "mlp_ranker"


class MlpRanker:
    """logit = MLP([embeddings of each sparse feature, genre projection, dense projection])."""

    def __init__(self, weights: dict[str, np.ndarray], n_sparse: int) -> None:
        self.tables = [weights[f"emb_{i}"] for i in range(n_sparse)]
        self.genre_w = weights["genre_w"]
        self.dense_w, self.dense_b = weights["dense_w"], weights["dense_b"]
        self.layers = []
        i = 0
        while f"mlp_w{i}" in weights:
            self.layers.append((weights[f"mlp_w{i}"], weights[f"mlp_b{i}"]))
            i += 1
        if not self.layers:
            raise ValueError("ranker weights have no MLP layers")

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        parts = [table[batch.sparse[:, i]] for i, table in enumerate(self.tables)]
        parts.append(batch.genres @ self.genre_w)
        parts.append(np.maximum(batch.dense @ self.dense_w + self.dense_b, 0.0))
        h = np.concatenate(parts, axis=1)
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self.layers[-1]
        return (h @ w + b)[:, 0].astype(np.float32)

    def scores(self, batch: EncodedBatch) -> np.ndarray:
        """Probabilities of a positive interaction."""
        return (1.0 / (1.0 + np.exp(-self.logits(batch)))).astype(np.float32)
