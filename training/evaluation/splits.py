"""Train / validation / test splits of all interactions, and a split supplied as files.

* random: per user, a seeded random permutation of the user's interactions; the last ~10% go to test, the
  ~10% before them to validation, the rest to train (users with fewer than 3 interactions stay in train).
* temporal: one global time cut; the oldest 80% of interactions train, the next 10% validate, the newest 10%
  test (ties broken by user and item, so train never holds anything newer than test).
* files: train.csv, valid.csv, test.csv (user_id,item_id,timestamp[,rating], MovieLens ids), for comparing
  with other libraries on identical splits.

Every part keeps the full user and item vocabularies, so every model scores every item.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data.interactions import Interactions

FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_FILES = ("train", "valid", "test")
REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")


class SplitError(ValueError):
    """A split cannot be made or read; the message says what is wrong."""


@dataclass(frozen=True)
class Split:
    kind: str  # "random", "temporal" or "files" (with "-validation" when scored on the validation part)
    train: Interactions
    valid: Interactions
    test: Interactions
    seed: int | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    def for_validation(self) -> Split:
        """The same split scored against its validation part: what settings are chosen on. The test part takes
        the validation part's place, so it is excluded from the rankings and never scored."""
        notes = (*self.notes, "scored against the validation part (the test part is held out)")
        return replace(self, kind=f"{self.kind}-validation", valid=self.test, test=self.valid, notes=notes)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "seed": self.seed,
            "fractions": list(FRACTIONS) if not self.kind.startswith("files") else None,
            "interactions": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)},
            "users_with_test": len(np.unique(self.test.user_idx)),
        }
        if self.source:
            out["source"] = self.source
        if self.notes:
            out["notes"] = list(self.notes)
        if len(self.train) and len(self.test):
            out["time_range"] = {
                name: [_iso(part.timestamps.min()), _iso(part.timestamps.max())]
                for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))
                if len(part)
            }
        return out


def _iso(seconds: np.integer[Any] | int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()


def held_out_count(n: np.ndarray, fraction: float) -> np.ndarray:
    """Interactions a user with n interactions gives to a held-out part: round(fraction * n), at least 1 when
    n >= 3, none when n < 3."""
    n = np.asarray(n, dtype=np.int64)
    k = np.floor(n * fraction + 0.5).astype(np.int64)
    return np.where(n >= 3, np.maximum(k, 1), 0)


def random_split(data: Interactions, seed: int, fractions: tuple[float, float, float] = FRACTIONS) -> Split:
    """Per-user random 80/10/10 split (vectorised); the same seed gives the same split."""
    rng = np.random.default_rng(seed)
    key = rng.random(len(data))
    order = np.lexsort((key, data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(data), dtype=np.int64)
    position[order] = np.arange(len(data)) - np.repeat(starts, counts)
    n = counts[data.user_idx]
    n_test = held_out_count(n, fractions[2])
    n_valid = held_out_count(n, fractions[1])
    train_end = n - n_test - n_valid
    part = np.where(position < train_end, 0, np.where(position < n - n_test, 1, 2))
    return Split(
        "random", data.subset(part == 0), data.subset(part == 1), data.subset(part == 2), seed=seed, source="data"
    )


def temporal_split(data: Interactions, fractions: tuple[float, float, float] = FRACTIONS) -> Split:
    """One global cut by time: the oldest 80% train, the next 10% validation, the newest 10% test."""
    order = np.lexsort((data.item_idx, data.user_idx, data.timestamps))
    n = len(order)
    n_train = round(n * fractions[0])
    n_valid = round(n * fractions[1])
    return Split(
        "temporal",
        data.subset(np.sort(order[:n_train])),
        data.subset(np.sort(order[n_train : n_train + n_valid])),
        data.subset(np.sort(order[n_train + n_valid :])),
        source="data",
    )


def make_split(data: Interactions, kind: str, seed: int) -> Split:
    if kind == "random":
        return random_split(data, seed)
    if kind == "temporal":
        return temporal_split(data)
    raise SplitError(f"unknown split {kind!r}; use random or temporal, or --split-dir")


def _read_part(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SplitError(f"{path} is missing: a split folder needs {', '.join(f + '.csv' for f in SPLIT_FILES)}")
    try:
        frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path} is not a readable CSV file: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise SplitError(
            f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns)) or 'none'} "
            f"(expected a header line {','.join(REQUIRED_COLUMNS)}[,rating])"
        )
    if frame[list(REQUIRED_COLUMNS)].isna().any().any():
        bad = int(frame[list(REQUIRED_COLUMNS)].isna().any(axis=1).to_numpy().argmax())
        raise SplitError(f"{path}: row {bad + 2} has an empty {', '.join(REQUIRED_COLUMNS)} field")
    return frame


def _seconds(values: pd.Series, path: Path) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=np.float64).astype(np.int64)
    parsed = pd.to_datetime(values, utc=True, errors="coerce")
    if parsed.isna().any():
        bad = int(parsed.isna().to_numpy().argmax())
        raise SplitError(
            f"{path}: timestamp {values.iloc[bad]!r} (row {bad + 2}) is neither seconds since the epoch nor a date"
        )
    return (parsed.astype("int64") // 10**9).to_numpy(dtype=np.int64)


def _rows(vocabulary: np.ndarray, ids: pd.Series, what: str, path: Path) -> np.ndarray:
    rows = pd.Index(vocabulary.astype(str)).get_indexer(ids.str.strip())
    if (rows < 0).any():
        unknown = ids[rows < 0].unique()
        raise SplitError(
            f"{path}: {int((rows < 0).sum())} row(s) name {what}s unknown to the data set, e.g. "
            f"{', '.join(map(str, unknown[:5]))} (ids must be the data set's, e.g. MovieLens ids)"
        )
    return rows.astype(np.int64)


def load_split_dir(directory: Path, data: Interactions) -> Split:
    """Reads train.csv, valid.csv and test.csv over the vocabularies of `data`.

    Ratings come from a `rating` column when present, else from `data` for the same (user, item); pairs
    unknown to `data` get its mean rating (counted in the split's notes). Raises SplitError naming the file
    and the problem: missing files or columns, unknown ids, bad timestamps, duplicate or shared pairs.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SplitError(f"split folder {directory} does not exist")
    width = data.n_items
    known_keys = data.user_idx * width + data.item_idx
    key_order = np.argsort(known_keys, kind="stable")
    sorted_keys = known_keys[key_order]
    mean_rating = float(data.ratings.mean()) if len(data) else 0.0
    parts: dict[str, Interactions] = {}
    keys: dict[str, np.ndarray] = {}
    imputed = 0
    for name in SPLIT_FILES:
        path = directory / f"{name}.csv"
        frame = _read_part(path)
        u = _rows(data.user_ids, frame["user_id"], "user", path)
        i = _rows(data.item_ids, frame["item_id"], "item", path)
        k = u * width + i
        uniq, first, counts = np.unique(k, return_index=True, return_counts=True)
        if (counts > 1).any():
            row = int(first[np.argmax(counts > 1)])
            raise SplitError(
                f"{path}: the pair user {frame['user_id'].iloc[row]}, item {frame['item_id'].iloc[row]} appears "
                f"{int(counts.max())} times; each (user, item) pair may appear once"
            )
        if "rating" in frame.columns:
            ratings = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float32)
            if np.isnan(ratings).any():
                raise SplitError(f"{path}: the rating column holds non-numeric or empty values")
        else:
            pos = np.searchsorted(sorted_keys, k)
            pos = np.minimum(pos, max(len(sorted_keys) - 1, 0))
            found = (sorted_keys[pos] == k) if len(sorted_keys) else np.zeros(len(k), dtype=bool)
            ratings = np.where(found, data.ratings[key_order[pos]] if len(sorted_keys) else 0.0, mean_rating)
            imputed += int((~found).sum())
        parts[name] = Interactions(
            user_ids=data.user_ids,
            item_ids=data.item_ids,
            users=data.users,
            items=data.items,
            user_idx=u,
            item_idx=i,
            timestamps=_seconds(frame["timestamp"], path),
            ratings=np.asarray(ratings, dtype=np.float32),
        )
        keys[name] = uniq
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        shared = np.intersect1d(keys[a], keys[b])
        if len(shared):
            user, item = data.user_ids[shared[0] // width], data.item_ids[shared[0] % width]
            raise SplitError(
                f"{a}.csv and {b}.csv share {len(shared)} (user, item) pair(s), e.g. user {user}, item {item}; "
                "the parts of a split must be disjoint"
            )
    if len(parts["test"]) == 0:
        raise SplitError(f"{directory / 'test.csv'} holds no interactions")
    if len(parts["train"]) == 0:
        raise SplitError(f"{directory / 'train.csv'} holds no interactions")
    notes = (f"{imputed} rating(s) not found in the data set were set to its mean",) if imputed else ()
    return Split("files", parts["train"], parts["valid"], parts["test"], source=str(directory), notes=notes)
