"""How the two-tower model's inputs are encoded: one definition for training and for the towers at request time.

Categorical inputs are vocabulary indices with 0 for unknown. The vocabularies a trained model used travel in
its bundle contract; the defaults here are what training writes there.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

QUERY_INPUTS = ("user", "demographics", "context", "history", "history_length")
QUERY_OUTPUT = "query"
ITEM_INPUTS = ("ids", "genres", "years", "titles")
ITEM_OUTPUT = "item"

# Age bands of MovieLens-1M, used to bucket raw ages so that the feature generalises.
AGE_BUCKETS: tuple[int, ...] = (0, 18, 25, 35, 45, 50, 56)
GENDERS = ("M", "F")
DEVICES = ("unknown", "mobile", "desktop", "tv")  # MovieLens has no device: training sees index 0 only
YEAR_EDGES = (1930, 1940, 1950, 1960, 1970, 1975, 1980, 1985, 1990, 1993, 1995, 1996, 1997, 1998)


def title_tokens(titles: Sequence[str], buckets: int, max_tokens: int) -> np.ndarray:
    """(n, max_tokens) hashed word ids in 1..buckets-1, 0 = padding; the trailing "(year)" is dropped."""
    out = np.zeros((len(titles), max_tokens), dtype=np.int64)
    for row, title in enumerate(titles):
        words = re.findall(r"[a-z0-9]+", re.sub(r"\(\d{4}\)\s*$", "", str(title).lower()))
        for col, word in enumerate(words[:max_tokens]):
            out[row, col] = zlib.crc32(word.encode()) % (buckets - 1) + 1
    return out


def year_buckets(years: np.ndarray, edges: Sequence[int] = YEAR_EDGES) -> np.ndarray:
    """Release-year bucket indices, 0 for unknown (year <= 0)."""
    years = np.asarray(years, dtype=np.int64)
    return np.where(years > 0, np.digitize(years, edges) + 1, 0).astype(np.int64)


def genre_multi_hot(genres: Sequence[Sequence[str]], vocab: Sequence[str]) -> np.ndarray:
    """(n, len(vocab)) 0/1 floats; names outside the vocabulary are ignored."""
    pos = {g: i for i, g in enumerate(vocab)}
    out = np.zeros((len(genres), len(vocab)), dtype=np.float32)
    for row, names in enumerate(genres):
        for name in names:
            if name in pos:
                out[row, pos[name]] = 1.0
    return out


def context_indices(timestamps: np.ndarray | None, n: int, device: int = 0) -> np.ndarray:
    """(n, 3) hour, weekday (Monday = 1), device indices, each +1 so that 0 = unknown; hour and weekday are
    unknown without timestamps."""
    out = np.zeros((n, 3), dtype=np.int64)
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.int64)
        out[:, 0] = (ts // 3600) % 24 + 1
        out[:, 1] = ((ts // 86400) + 3) % 7 + 1  # 1970-01-01 was a Thursday
    out[:, 2] = device
    return out
