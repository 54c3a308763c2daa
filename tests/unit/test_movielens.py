"""The loader on the real MovieLens-100K files, in both layouts it accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from training.data.movielens import DatasetError, load_movielens_100k
from training.data.schema import MOVIELENS_GENRES

from ..conftest import REPO, require

ATOMIC = REPO / "var" / "data" / "raw" / "ml-100k"


@pytest.fixture(scope="module")
def atomic_dir() -> Path:
    require((ATOMIC / "ml-100k.inter").exists(), "MovieLens files not fetched; run `make data`")
    return ATOMIC


def _write_grouplens(atomic: Path, out: Path) -> None:
    """Writes the GroupLens layout (u.data, u.user, u.item) from the atomic files, as GroupLens ships it."""
    inter = pd.read_csv(atomic / "ml-100k.inter", sep="\t", dtype=str)
    inter.to_csv(out / "u.data", sep="\t", header=False, index=False)
    users = pd.read_csv(atomic / "ml-100k.user", sep="\t", dtype=str)
    users.to_csv(out / "u.user", sep="|", header=False, index=False)
    items = pd.read_csv(atomic / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    rows = []
    for _, r in items.iterrows():
        flags = ["1" if g in r["class:token_seq"].split() else "0" for g in MOVIELENS_GENRES]
        year = r["release_year:token"]
        title = f"{r['movie_title:token_seq']} ({year})" if year else r["movie_title:token_seq"]
        rows.append("|".join([r["item_id:token"], title, f"01-Jan-{year}" if year else "", "", "http://x", *flags]))
    (out / "u.item").write_text("\n".join(rows) + "\n", encoding="latin-1", errors="replace")


def test_atomic_files_load_and_validate(atomic_dir: Path) -> None:
    ds = load_movielens_100k(atomic_dir)
    assert (len(ds.interactions), len(ds.users), len(ds.items)) == (100_000, 943, 1_682)
    toy_story = ds.items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story" and toy_story["year"] == 1995
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"]
    assert str(ds.interactions["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_grouplens_layout_gives_the_same_data(atomic_dir: Path, tmp_path: Path) -> None:
    _write_grouplens(atomic_dir, tmp_path)
    a, g = load_movielens_100k(atomic_dir), load_movielens_100k(tmp_path)
    pd.testing.assert_frame_equal(a.interactions, g.interactions)
    assert a.items["genres"].tolist() == g.items["genres"].tolist()
    assert a.items["year"].tolist() == g.items["year"].tolist()


def test_truncated_data_is_rejected_with_what_is_wrong(atomic_dir: Path, tmp_path: Path) -> None:
    for name in ("ml-100k.user", "ml-100k.item"):
        shutil.copy(atomic_dir / name, tmp_path / name)
    lines = (atomic_dir / "ml-100k.inter").read_text().splitlines()
    (tmp_path / "ml-100k.inter").write_text("\n".join(lines[:5001]) + "\n")
    with pytest.raises(DatasetError, match="5,000 ratings, expected 100,000"):
        load_movielens_100k(tmp_path)


def test_out_of_range_ratings_are_rejected(atomic_dir: Path, tmp_path: Path) -> None:
    for name in ("ml-100k.user", "ml-100k.item"):
        shutil.copy(atomic_dir / name, tmp_path / name)
    text = (atomic_dir / "ml-100k.inter").read_text().replace("\t3\t", "\t7\t", 1)
    (tmp_path / "ml-100k.inter").write_text(text)
    with pytest.raises(DatasetError, match=r"ratings outside 1\.\.5"):
        load_movielens_100k(tmp_path)


def test_a_folder_without_movielens_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="holds neither the GroupLens files"):
        load_movielens_100k(tmp_path)
