"""MovieLens-100K: load it from a GroupLens `ml-100k` folder or RecBole atomic files, or fetch it.

When no folder is given, the RecBole 1.2.1 wheel is downloaded from PyPI (`pip download --no-deps`)
and the atomic files are read from `recbole/dataset_example/ml-100k/` inside it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

from training.data.schema import MOVIELENS_GENRES, Dataset

RECBOLE_WHEEL = "recbole==1.2.1"
_WHEEL_PREFIX = "recbole/dataset_example/ml-100k/"
_ATOMIC_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
_GROUPLENS_FILES = ("u.data", "u.user", "u.item")

EXPECTED_RATINGS = 100_000
EXPECTED_USERS = 943
EXPECTED_ITEMS = 1_682


class DatasetError(ValueError):
    """The data set is missing, malformed or not MovieLens-100K."""


def load_movielens_100k(source: Path | None = None, cache_dir: Path | None = None) -> Dataset:
    """Loads and validates MovieLens-100K.

    `source` may be a GroupLens `ml-100k` folder (u.data, u.user, u.item) or a folder of RecBole atomic
    files (ml-100k.inter/.user/.item). Without it, the files are fetched into `cache_dir`.
    """
    if source is None:
        if cache_dir is None:
            raise DatasetError("give either a MovieLens folder or a cache folder to fetch it into")
        source = fetch_from_recbole_wheel(cache_dir)
    source = Path(source)
    if all((source / name).is_file() for name in _GROUPLENS_FILES):
        dataset = _read_grouplens(source)
    elif all((source / name).is_file() for name in _ATOMIC_FILES):
        dataset = _read_atomic(source)
    else:
        raise DatasetError(
            f"{source} holds neither the GroupLens files ({', '.join(_GROUPLENS_FILES)}) "
            f"nor the RecBole atomic files ({', '.join(_ATOMIC_FILES)})"
        )
    validate(dataset)
    return dataset


def fetch_from_recbole_wheel(cache_dir: Path) -> Path:
    """Downloads the RecBole wheel (once) and extracts its ml-100k atomic files; returns their folder."""
    target = cache_dir / "ml-100k"
    if all((target / name).is_file() for name in _ATOMIC_FILES):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("recbole-*.whl"))
    if not wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            RECBOLE_WHEEL,
            "-d",
            str(cache_dir),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(cache_dir.glob("recbole-*.whl"))
        if result.returncode != 0 or not wheels:
            raise DatasetError(f"could not download {RECBOLE_WHEEL} from PyPI: {result.stderr.strip()[-500:]}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in _ATOMIC_FILES:
            member = _WHEEL_PREFIX + name
            try:
                (target / name).write_bytes(wheel.read(member))
            except KeyError as exc:
                raise DatasetError(f"{wheels[-1].name} has no {member}") from exc
    return target


def _read_grouplens(folder: Path) -> Dataset:
    inter = pd.read_csv(
        folder / "u.data",
        sep="\t",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str, "rating": "float32", "timestamp": "int64"},
    )
    users = pd.read_csv(
        folder / "u.user",
        sep="|",
        header=None,
        names=["user_id", "age", "gender", "occupation", "zip_code"],
        dtype={"user_id": str, "age": "int64", "gender": str, "occupation": str, "zip_code": str},
    )
    flag_cols = [f"g{i}" for i in range(len(MOVIELENS_GENRES))]
    raw = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        names=["item_id", "title", "release_date", "video_date", "url", *flag_cols],
        dtype={"item_id": str},
    )
    # Titles carry the year in parentheses ("Toy Story (1995)"); the release date is the fallback.
    year_in_title = raw["title"].fillna("").str.extract(r"\((\d{4})\)\s*$")[0]
    year_in_date = raw["release_date"].fillna("").str[-4:]
    year = pd.to_numeric(year_in_title.fillna(year_in_date), errors="coerce").fillna(0).astype("int64")
    title = raw["title"].fillna("").str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True).str.strip()
    flags = raw[flag_cols].to_numpy(dtype=bool)
    genres = [[g for g, on in zip(MOVIELENS_GENRES, row, strict=True) if on] for row in flags]
    items = pd.DataFrame({"item_id": raw["item_id"], "title": title, "year": year, "genres": genres})
    return _finish("ml-100k", inter, users, items)


def _read_atomic(folder: Path) -> Dataset:
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t", dtype=str)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter = inter.rename(columns={"rating": "rating", "timestamp": "timestamp"})
    inter["rating"] = pd.to_numeric(inter["rating"], errors="coerce").astype("float32")
    inter["timestamp"] = pd.to_numeric(inter["timestamp"], errors="coerce").astype("int64")
    users = pd.read_csv(folder / "ml-100k.user", sep="\t", dtype=str)
    users.columns = [c.split(":")[0] for c in users.columns]
    users["age"] = pd.to_numeric(users["age"], errors="coerce").fillna(0).astype("int64")
    raw = pd.read_csv(folder / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "title": raw["movie_title"].str.strip(),
            "year": pd.to_numeric(raw["release_year"], errors="coerce").fillna(0).astype("int64"),
            "genres": [g.split() if g else [] for g in raw["class"]],
        }
    )
    return _finish("ml-100k", inter[["user_id", "item_id", "rating", "timestamp"]], users, items)


def _finish(name: str, inter: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> Dataset:
    inter = inter.copy()
    inter["timestamp"] = pd.to_datetime(inter["timestamp"], unit="s", utc=True)
    users = users[["user_id", "age", "gender", "occupation", "zip_code"]].copy()
    users["zip_code"] = users["zip_code"].fillna("").astype(str)
    return Dataset(name=name, interactions=inter.reset_index(drop=True), users=users, items=items)


def validate(dataset: Dataset) -> None:
    """Checks that the data is MovieLens-100K: sizes, id consistency, value ranges and types."""
    inter, users, items = dataset.interactions, dataset.users, dataset.items
    problems: list[str] = []
    if len(inter) != EXPECTED_RATINGS:
        problems.append(f"{len(inter):,} ratings, expected {EXPECTED_RATINGS:,}")
    if users["user_id"].nunique() != EXPECTED_USERS or len(users) != EXPECTED_USERS:
        problems.append(f"{len(users):,} users, expected {EXPECTED_USERS:,} distinct")
    if items["item_id"].nunique() != EXPECTED_ITEMS or len(items) != EXPECTED_ITEMS:
        problems.append(f"{len(items):,} items, expected {EXPECTED_ITEMS:,} distinct")
    if inter["rating"].isna().any() or not inter["rating"].between(1, 5).all():
        problems.append("ratings outside 1..5 or not numbers")
    if inter[["user_id", "item_id"]].isna().any().any():
        problems.append("interactions with a missing user or item id")
    unknown_users = set(inter["user_id"]) - set(users["user_id"])
    if unknown_users:
        problems.append(f"{len(unknown_users)} rated-by user ids missing from the user file")
    unknown_items = set(inter["item_id"]) - set(items["item_id"])
    if unknown_items:
        problems.append(f"{len(unknown_items)} rated item ids missing from the item file")
    if inter.duplicated(["user_id", "item_id"]).any():
        problems.append("a user rates the same item twice")
    ts = inter["timestamp"]
    if ts.isna().any() or ts.min().year < 1995 or ts.max().year > 1999:
        problems.append("timestamps outside 1995..1999 (MovieLens-100K was collected 1997-98)")
    if not users["age"].between(1, 100).all():
        problems.append("user ages outside 1..100")
    if not users["gender"].isin(["M", "F"]).all():
        problems.append("gender values other than M/F")
    if problems:
        raise DatasetError("not a valid MovieLens-100K data set: " + "; ".join(problems))
