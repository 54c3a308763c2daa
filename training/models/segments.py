"""User segments: k-means (Faiss) over user embeddings, with each segment's most popular items as the
cold-start fallback for a user who can be placed in a segment but has no history to retrieve from."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from training.data.interactions import Interactions


@dataclass(frozen=True)
class SegmentConfig:
    n_segments: int = 16
    iterations: int = 25
    top_items: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Segments:
    assignments: np.ndarray  # int64 (n_users,) segment of every user
    centroids: np.ndarray  # float32 (k, dim)
    popular_items: np.ndarray  # int64 (k, top_items) item rows, most interacted-with in the segment first
    sizes: np.ndarray  # int64 (k,) users per segment

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Nearest segment (L2) of each row of `vectors`."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        d2 = (x * x).sum(1)[:, None] - 2 * x @ self.centroids.T + (self.centroids**2).sum(1)[None, :]
        return d2.argmin(axis=1).astype(np.int64)


def user_segments(user_vectors: np.ndarray, data: Interactions, config: SegmentConfig | None = None) -> Segments:
    """Clusters `user_vectors` (rows aligned with data's users) and ranks items by interactions per segment."""
    config = config or SegmentConfig()
    x = np.ascontiguousarray(user_vectors, dtype=np.float32)
    k = max(1, min(config.n_segments, len(x)))
    kmeans = faiss.Kmeans(x.shape[1], k, niter=config.iterations, seed=config.seed, verbose=False)
    kmeans.train(x)
    _, nearest = kmeans.index.search(x, 1)
    assignments = nearest[:, 0].astype(np.int64)
    counts = np.zeros((k, data.n_items), dtype=np.int64)
    np.add.at(counts, (assignments[data.user_idx], data.item_idx), 1)
    # Ties (and empty segments) fall back to global popularity order.
    global_pop = data.item_popularity()
    top = min(config.top_items, data.n_items)
    popular = np.stack([np.lexsort((-global_pop, -row))[:top] for row in counts]).astype(np.int64)
    return Segments(
        assignments=assignments,
        centroids=np.asarray(kmeans.centroids, dtype=np.float32).reshape(k, -1),
        popular_items=popular,
        sizes=np.bincount(assignments, minlength=k).astype(np.int64),
    )
