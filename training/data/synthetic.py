"""A synthetic data set with MovieLens' schema, at any size, for tests and scale benchmarks.

Users belong to taste clusters; each cluster prefers its own items, and popularity inside a cluster and
overall follows a power law. Everything is vectorised: 1M users x 1M items takes about a minute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.schema import MOVIELENS_GENRES, Dataset

_OCCUPATIONS = ("student", "engineer", "educator", "artist", "writer", "other")
_START = pd.Timestamp("2024-01-01", tz="UTC")


def generate(
    n_users: int,
    n_items: int,
    interactions_per_user: float = 20.0,
    n_clusters: int = 16,
    in_cluster_share: float = 0.8,
    zipf_exponent: float = 2.0,
    seed: int = 0,
) -> Dataset:
    """Generates a data set. `interactions_per_user` is the mean of a geometric per-user count."""
    if n_users <= 0 or n_items <= 0:
        raise ValueError("n_users and n_items must be positive")
    rng = np.random.default_rng(seed)
    n_clusters = max(1, min(n_clusters, n_items))
    item_cluster = rng.integers(0, n_clusters, n_items)
    # Items of each cluster, in a random "popularity rank" order.
    order = np.argsort(item_cluster * n_items + rng.permutation(n_items), kind="stable")
    cluster_start = np.searchsorted(item_cluster[order], np.arange(n_clusters + 1))
    cluster_size = np.diff(cluster_start)

    user_cluster = rng.integers(0, n_clusters, n_users)
    counts = rng.geometric(1.0 / max(interactions_per_user, 1.0), n_users)
    user_idx = np.repeat(np.arange(n_users), counts)
    total = len(user_idx)
    own = rng.random(total) < in_cluster_share
    cluster = np.where(own, user_cluster[user_idx], rng.integers(0, n_clusters, total))
    size = cluster_size[cluster]
    nonempty = size > 0
    # Power-law rank inside the cluster: u ** exponent concentrates mass on small ranks.
    rank = np.minimum((rng.random(total) ** zipf_exponent * size).astype(np.int64), np.maximum(size - 1, 0))
    item_idx = order[cluster_start[cluster] + rank]
    item_idx = np.where(nonempty, item_idx, rng.integers(0, n_items, total))

    seconds = rng.integers(0, 180 * 86_400, total)
    ratings = np.clip(np.round(rng.normal(3.6 + 0.6 * own, 1.0)), 1, 5).astype(np.float32)
    # One interaction per (user, item): deduplicate on integer keys, before any strings exist.
    _, keep = np.unique(user_idx.astype(np.int64) * n_items + item_idx, return_index=True)
    keep.sort()
    inter = pd.DataFrame(
        {
            "user_id": (user_idx[keep] + 1).astype(str),
            "item_id": (item_idx[keep] + 1).astype(str),
            "rating": ratings[keep],
            "timestamp": _START + pd.to_timedelta(seconds[keep], unit="s"),
        }
    )

    ages = rng.integers(15, 70, n_users)
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1).astype(str),
            "age": ages,
            "gender": np.where(rng.random(n_users) < 0.5, "M", "F"),
            "occupation": np.asarray(_OCCUPATIONS)[user_cluster % len(_OCCUPATIONS)],
            "zip_code": rng.integers(10_000, 99_999, n_users).astype(str),
        }
    )
    genre_names = np.asarray(MOVIELENS_GENRES[1:])
    primary = genre_names[item_cluster % len(genre_names)]
    secondary = genre_names[rng.integers(0, len(genre_names), n_items)]
    genres = [[a] if a == b else [a, b] for a, b in zip(primary.tolist(), secondary.tolist(), strict=True)]
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1).astype(str),
            "title": [f"Synthetic item {i}" for i in range(1, n_items + 1)],
            "year": rng.integers(1950, 2025, n_items),
            "genres": genres,
        }
    )
    return Dataset(name=f"synthetic-{n_users}x{n_items}", interactions=inter, users=users, items=items)
