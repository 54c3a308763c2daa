"""Interactions indexed for models: dense user and item rows, aligned feature tables, and subsets.

Every model, the evaluation harness and the training jobs share this one view of the data. Ids are
strings at the edges; `user_ids[row]` / `item_ids[row]` map rows back. Subsets (train/valid/test splits)
keep the full vocabularies so that every model scores every item.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Interactions:
    """user_idx, item_idx (int64), timestamps (int64 seconds since the epoch) and ratings (float32), one
    entry per interaction, plus the users and items tables aligned with the rows of the vocabularies.

    users: user_id, age_bucket (int), gender, occupation.  items: item_id, title, year (int), genres (list).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: pd.DataFrame
    items: pd.DataFrame
    user_idx: np.ndarray
    item_idx: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user_idx)

    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        """The interactions selected by a boolean mask or an index array, with the same vocabularies."""
        sel = mask_or_index
        return replace(
            self,
            user_idx=self.user_idx[sel],
            item_idx=self.item_idx[sel],
            timestamps=self.timestamps[sel],
            ratings=self.ratings[sel],
        )

    def concat(self, other: Interactions) -> Interactions:
        """These interactions followed by `other`'s (same vocabularies)."""
        if other.n_users != self.n_users or other.n_items != self.n_items:
            raise ValueError("cannot concatenate interactions over different vocabularies")
        return replace(
            self,
            user_idx=np.concatenate([self.user_idx, other.user_idx]),
            item_idx=np.concatenate([self.item_idx, other.item_idx]),
            timestamps=np.concatenate([self.timestamps, other.timestamps]),
            ratings=np.concatenate([self.ratings, other.ratings]),
        )

    def user_item_matrix(self) -> np.ndarray:
        """Dense (n_users, n_items) float32 0/1 matrix of who interacted with what (MovieLens-size data)."""
        m = np.zeros((self.n_users, self.n_items), dtype=np.float32)
        m[self.user_idx, self.item_idx] = 1.0
        return m

    def seen_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) of each user's items, sorted by user then time."""
        order = np.lexsort((self.timestamps, self.user_idx))
        indices = self.item_idx[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.user_idx, minlength=self.n_users))])
        return indptr.astype(np.int64), indices.astype(np.int64)

    def item_popularity(self) -> np.ndarray:
        return np.bincount(self.item_idx, minlength=self.n_items).astype(np.int64)

    def genre_matrix(self) -> tuple[np.ndarray, list[str]]:
        """(n_items, n_genres) 0/1 float32 genre flags and the genre vocabulary."""
        vocab = sorted({g for gs in self.items["genres"] for g in gs})
        pos = {g: i for i, g in enumerate(vocab)}
        m = np.zeros((self.n_items, len(vocab)), dtype=np.float32)
        for row, gs in enumerate(self.items["genres"]):
            for g in gs:
                m[row, pos[g]] = 1.0
        return m, vocab


def from_frames(inter: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> Interactions:
    """From the offline source tables (training/data/offline.py): interactions with user_id, item_id,
    rating, event_timestamp; the user and item profile tables."""
    users = users.drop_duplicates("user_id", keep="last").reset_index(drop=True)
    items = items.drop_duplicates("item_id", keep="last").reset_index(drop=True)
    user_pos = pd.Index(users["user_id"])
    item_pos = pd.Index(items["item_id"])
    u = user_pos.get_indexer(inter["user_id"])
    i = item_pos.get_indexer(inter["item_id"])
    if (u < 0).any() or (i < 0).any():
        raise ValueError("interactions reference users or items missing from the profiles")
    ts = pd.to_datetime(inter["event_timestamp"], utc=True)
    return Interactions(
        user_ids=users["user_id"].to_numpy(dtype=object),
        item_ids=items["item_id"].to_numpy(dtype=object),
        users=users,
        items=items,
        user_idx=u.astype(np.int64),
        item_idx=i.astype(np.int64),
        timestamps=(ts.astype("int64") // 10**9).to_numpy(dtype=np.int64),
        ratings=inter["rating"].to_numpy(dtype=np.float32),
    )


def load_offline(offline_dir: Path) -> Interactions:
    """Reads the Parquet offline sources written by `python -m training.prepare`."""
    return from_frames(
        pd.read_parquet(offline_dir / "interactions.parquet"),
        pd.read_parquet(offline_dir / "users.parquet"),
        pd.read_parquet(offline_dir / "items.parquet"),
    )
