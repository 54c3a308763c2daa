"""The training data, read through the Feast offline store: historical interactions plus the live feedback log.

This is how a retrain learns from live feedback: the gateway stores each acknowledged event in the event log;
the offline store's `feedback_events_source` reads that log (on PostgreSQL the log table itself; with the
embedded file store, the snapshot `python -m training.data.event_export` writes); `read_training_frames`
pulls both interaction sources and the profiles with Feast's offline store API and maps events to interactions.
The same code path serves the file (Parquet) and PostgreSQL offline stores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_REPO = Path(__file__).resolve().parents[2] / "features"

#: Event types that count as a positive interaction for training; a `view` alone says too little.
TRAINING_EVENT_TYPES = ("click", "rating", "purchase")
#: The rating given to an implicit positive (click, purchase) so rating statistics stay defined; documented
#: in docs/training.md.
IMPLICIT_RATING = 4.0
#: Profile values for users who first appear in the live log (no sign-up demographics yet).
NEW_USER_PROFILE = {"age_bucket": 0, "gender": "", "occupation": "other", "zip_prefix": ""}

EVENT_COLUMNS = ("user_id", "item_id", "event_type", "value", "event_timestamp")


def events_to_interactions(events: pd.DataFrame) -> pd.DataFrame:
    """Feedback events (EVENT_COLUMNS) -> interactions (user_id, item_id, rating, event_timestamp)."""
    kept = events[events["event_type"].isin(TRAINING_EVENT_TYPES)]
    rating = np.where(kept["event_type"] == "rating", kept["value"], IMPLICIT_RATING).astype(np.float32)
    return pd.DataFrame(
        {
            "user_id": kept["user_id"].astype(str).to_numpy(),
            "item_id": kept["item_id"].astype(str).to_numpy(),
            "rating": rating,
            "event_timestamp": pd.to_datetime(kept["event_timestamp"], utc=True).to_numpy(),
        }
    ).assign(event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"], utc=True))


def _pull(store: FeatureStore, source_name: str, keys: list[str], columns: list[str]) -> pd.DataFrame:
    source = store.get_data_source(source_name)
    job = store._get_provider().offline_store.pull_all_from_table_or_query(  # the API materialisation uses
        config=store.config,
        data_source=source,
        join_key_columns=keys,
        feature_name_columns=columns,
        timestamp_field="event_timestamp",
        start_date=pd.Timestamp("1970-01-01", tz="UTC").to_pydatetime(),
        end_date=pd.Timestamp.now(tz="UTC").to_pydatetime(),
    )
    return job.to_df()


def read_training_frames(repo_path: Path = FEATURE_REPO) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, users, items) as training/data/interactions.from_frames takes them."""
    from feast import FeatureStore  # imported when used: it takes seconds, and --help should not wait

    store = FeatureStore(repo_path=str(repo_path))
    history = _pull(store, "interactions_source", ["user_id", "item_id"], ["rating"])
    events = _pull(store, "feedback_events_source", ["user_id", "item_id"], ["event_type", "value"])
    users = _pull(store, "users_source", ["user_id"], ["age_bucket", "gender", "occupation", "zip_prefix"])
    items = _pull(store, "items_source", ["item_id"], ["title", "year", "genres"])
    users = users.sort_values("event_timestamp").drop_duplicates("user_id", keep="last").reset_index(drop=True)
    items = items.sort_values("event_timestamp").drop_duplicates("item_id", keep="last").reset_index(drop=True)
    return merge_feedback(history, events_to_interactions(events), users, items)


def merge_feedback(
    history: pd.DataFrame, feedback: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Appends feedback interactions to the history. Users first seen in the log get a default profile;
    events on items missing from the catalogue are dropped (counted in the log)."""
    known_item = feedback["item_id"].isin(items["item_id"])
    if (~known_item).any():
        log.warning("dropping %d feedback events on items not in the catalogue", int((~known_item).sum()))
    feedback = feedback[known_item]
    new_users = sorted(set(feedback["user_id"]) - set(users["user_id"]))
    if new_users:
        start = users["event_timestamp"].min() if "event_timestamp" in users else pd.Timestamp(0, tz="UTC")
        users = pd.concat(
            [users, pd.DataFrame({"user_id": new_users, **NEW_USER_PROFILE, "event_timestamp": start})],
            ignore_index=True,
        )
    inter = pd.concat([history[["user_id", "item_id", "rating", "event_timestamp"]], feedback], ignore_index=True)
    inter["event_timestamp"] = pd.to_datetime(inter["event_timestamp"], utc=True)
    inter = inter.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    log.info(
        "training data: %d historical + %d feedback interactions, %d new users",
        len(history),
        len(feedback),
        len(new_users),
    )
    return inter, users, items
