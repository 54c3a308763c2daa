"""Training data from the Feast offline store, as a Ray Data `Dataset`.

The entity dataframe is the training interactions (user_id, item_id, rating, event_timestamp): the historical
interactions source and the live feedback events, pulled through the offline store's API
(training/data/training_data.py), so a job learns from the event log on either offline store.
`FeatureStore.get_historical_features` joins the user_profile and item_profile
fields onto it point in time: each interaction gets the profile values valid at its own timestamp.

Feast's `file` (Dask) store keeps one row per (join keys, timestamp) of the entity dataframe, so two ratings
by the same user in the same second would collapse into one. The features are therefore fetched per feature
view for the distinct (key, timestamp) pairs, and joined back onto every interaction: the same point-in-time
values, no interaction lost, and fewer rows for Feast to join.

The repository is the one `feast` runs in (`features/` by default, `RECSYS_FEATURE_REPO`), configured by its
feature_store.yaml exactly as the Makefile's `feast apply` / `materialize-incremental` use it; the registry
must have been applied (`make features`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from training.data.interactions import Interactions, from_frames
from training.data.training_data import read_training_frames

if TYPE_CHECKING:
    import ray.data
    from feast import FeatureStore

log = logging.getLogger(__name__)

ENTITY_COLUMNS = ("user_id", "item_id", "rating", "event_timestamp")
TIMESTAMP = "event_timestamp"
USER_FEATURES = ("age_bucket", "gender", "occupation", "zip_prefix")
ITEM_FEATURES = ("title", "year", "genres")
#: The feature references the training jobs read (views and fields of features/definitions.py).
FEATURES: tuple[str, ...] = tuple(f"user_profile:{f}" for f in USER_FEATURES) + tuple(
    f"item_profile:{f}" for f in ITEM_FEATURES
)
#: Values used where a point-in-time lookup finds no row (an entity with no profile yet at that time).
MISSING: dict[str, Any] = {"age_bucket": 0, "gender": "", "occupation": "", "zip_prefix": "", "title": "", "year": 0}


def open_store(repo: Path) -> FeatureStore:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def interactions_entity_df(store: FeatureStore, limit: int | None = None) -> pd.DataFrame:
    """The training interactions as an entity dataframe, oldest first (`limit`: the most recent N only): the
    historical interactions source plus the live feedback events, read through the offline store
    (training/data/training_data.py), for the file and PostgreSQL offline stores alike."""
    frame, _, _ = read_training_frames(Path(store.repo_path))
    frame = frame[list(ENTITY_COLUMNS)].copy()
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    frame = frame.sort_values([TIMESTAMP, "user_id", "item_id"], kind="stable").reset_index(drop=True)
    if limit is not None:
        frame = frame.iloc[-limit:].reset_index(drop=True)
    return frame


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, features: Sequence[str] = FEATURES
) -> pd.DataFrame:
    """`entity_df` with the requested features joined point in time (one Feast query per feature view)."""
    by_view: dict[str, list[str]] = {}
    for ref in features:
        view, _, _field = ref.partition(":")
        by_view.setdefault(view, []).append(ref)
    out = entity_df
    for view, refs in by_view.items():
        keys = list(store.get_feature_view(view).join_keys)
        distinct = entity_df[[*keys, TIMESTAMP]].drop_duplicates(ignore_index=True)
        got = store.get_historical_features(entity_df=distinct, features=refs).to_df()
        got[TIMESTAMP] = pd.to_datetime(got[TIMESTAMP], utc=True)
        out = out.merge(got, on=[*keys, TIMESTAMP], how="left", validate="many_to_one")
    return out


def load_training_dataset(repo: Path, limit: int | None = None) -> ray.data.Dataset:
    """Interactions with their point-in-time user and item profile features, as a Ray Data Dataset."""
    import ray.data

    return ray.data.from_arrow(pa.Table.from_pandas(training_frame(repo, limit), preserve_index=False))


def training_frame(repo: Path, limit: int | None = None) -> pd.DataFrame:
    """Interactions with their point-in-time user and item profile features (what the Dataset holds)."""
    started = time.perf_counter()
    store = open_store(repo)
    entity_df = interactions_entity_df(store, limit)
    joined = historical_features(store, entity_df)
    missing = int(joined[list(MISSING)].isna().any(axis=1).sum())
    if missing:
        log.warning("%d interactions have no profile as of their timestamp; filled with defaults", missing)
    joined = joined.fillna(MISSING)
    joined["genres"] = [list(g) if isinstance(g, list | np.ndarray) else [] for g in joined["genres"]]
    log.info(
        "feast: %d interactions with %d features from %s (%.1fs)",
        len(joined),
        len(FEATURES),
        repo,
        time.perf_counter() - started,
    )
    return joined


def to_interactions(frame: pd.DataFrame) -> Interactions:
    """The training view of the joined rows. Vocabularies are the users and items that occur, sorted by id,
    with each one's latest profile (so every worker and every run index them the same way)."""
    frame = frame.sort_values([TIMESTAMP, "user_id", "item_id"], kind="stable").reset_index(drop=True)
    users = (
        frame[["user_id", *USER_FEATURES]].drop_duplicates("user_id", keep="last").sort_values("user_id")
    ).reset_index(drop=True)
    items = (
        frame[["item_id", *ITEM_FEATURES]].drop_duplicates("item_id", keep="last").sort_values("item_id")
    ).reset_index(drop=True)
    users["age_bucket"] = users["age_bucket"].astype("int64")
    items["year"] = items["year"].astype("int64")
    return from_frames(frame[list(ENTITY_COLUMNS)], users, items)


def dataset_to_interactions(ds: ray.data.Dataset) -> Interactions:
    return to_interactions(ds.to_pandas())
