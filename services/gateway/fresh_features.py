"""Fresh user features: accepted feedback updates the user's activity row in the Feast online store.

After a batch is durably in the event log, the gateway reads each affected user's current `user_activity`
row, folds the user's new events into it and pushes the result through the `user_activity_push` push source
(`FeatureStore.push(..., to=PushMode.ONLINE)`). The next `Recommend` then excludes what the user just
consumed and queries with the new history; a user unknown to the model gets item-neighbour candidates
instead of the popular list.

The event log stays the record of truth: a failed push is logged and never fails `RecordFeedback` (the
events are stored), and the batch pipeline recomputes the rows from the log. Within one gateway process
pushes are serialised, so two batches of one user never overwrite each other's update; across replicas a
rare concurrent update of the same user can lose one side's increment until the next batch recompute.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from services.gateway.eventlog import Event

log = logging.getLogger(__name__)

VIEW = "user_activity"
RECENT_ITEMS = 20  # length of recent_item_ids, as in the offline snapshots (training/data/offline.py)
FEATURES = ("interaction_count", "mean_rating", "recent_item_ids", "last_active")


@dataclass(frozen=True)
class Activity:
    """One user's `user_activity` row; the defaults are a user with no activity yet."""

    interaction_count: int = 0
    mean_rating: float = 0.0  # 0 = no rating yet (what readers default a missing value to)
    recent_item_ids: list[str] = field(default_factory=list)
    last_active: datetime | None = None

    @classmethod
    def from_online(cls, values: dict[str, Any]) -> Activity:
        mean = values.get("mean_rating")
        return cls(
            interaction_count=int(values.get("interaction_count") or 0),
            mean_rating=float(mean) if mean is not None and math.isfinite(mean) else 0.0,
            recent_item_ids=list(values.get("recent_item_ids") or []),
            last_active=values.get("last_active"),
        )


def fold(current: Activity, events: Sequence[Event]) -> Activity:
    """`current` with `events` (one user's new events) applied.

    The newest items go first in recent_item_ids (an item already there moves to the front), truncated to
    RECENT_ITEMS; every event counts as an interaction; ratings update the running mean, weighting the old
    mean by the interactions so far (MovieLens history is ratings only; the batch recompute is exact).
    """
    newest_first = sorted(events, key=lambda e: e.timestamp, reverse=True)
    recent: list[str] = []
    for item in [e.item_id for e in newest_first] + current.recent_item_ids:
        if item not in recent:
            recent.append(item)
    ratings = [e.value for e in events if e.event_type == "rating"]
    mean = current.mean_rating
    if ratings:
        prior = current.interaction_count if current.mean_rating > 0 else 0
        mean = (current.mean_rating * prior + sum(ratings)) / (prior + len(ratings))
    latest = datetime.fromtimestamp(max(e.timestamp for e in events), UTC)
    last_active = latest if current.last_active is None else max(current.last_active, latest)
    return Activity(
        interaction_count=current.interaction_count + len(events),
        mean_rating=mean,
        recent_item_ids=recent[:RECENT_ITEMS],
        last_active=last_active,
    )


def activity_frame(rows: dict[str, Activity], now: datetime) -> pd.DataFrame:
    """The rows in the push source's schema, valid from `now`."""
    users = sorted(rows)
    return pd.DataFrame(
        {
            "user_id": users,
            "interaction_count": pd.Series([rows[u].interaction_count for u in users], dtype="int64"),
            "mean_rating": pd.Series([rows[u].mean_rating for u in users], dtype="float32"),
            "recent_item_ids": [rows[u].recent_item_ids for u in users],
            "last_active": pd.to_datetime([rows[u].last_active for u in users], utc=True),
            "event_timestamp": pd.Timestamp(now),
        }
    )


class ActivityPusher:
    """Pushes updated activity rows; owns its own FeatureStore (the blocking SDK runs in a worker thread)."""

    def __init__(self, feature_repo: Path, push_source: str) -> None:
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(feature_repo))
        self.push_source = push_source
        self.store.get_data_source(push_source)  # fails at start-up when the registry lacks it
        self._lock = asyncio.Lock()

    async def update(self, events: Sequence[Event]) -> bool:
        """Folds stored events into their users' rows and pushes them; False (logged) when that failed."""
        if not events:
            return True
        try:
            async with self._lock:
                await asyncio.to_thread(self._update, events)
        except Exception:
            log.exception("fresh features: push of %d events failed; they are stored in the event log", len(events))
            return False
        return True

    def _update(self, events: Sequence[Event]) -> None:
        from feast.data_source import PushMode

        by_user: dict[str, list[Event]] = {}
        for e in events:
            by_user.setdefault(e.user_id, []).append(e)
        users = sorted(by_user)
        current = self.store.get_online_features(
            features=[f"{VIEW}:{name}" for name in FEATURES], entity_rows=[{"user_id": u} for u in users]
        ).to_dict()
        rows = {
            user: fold(Activity.from_online({name: current[name][i] for name in FEATURES}), by_user[user])
            for i, user in enumerate(users)
        }
        self.store.push(self.push_source, activity_frame(rows, datetime.now(UTC)), to=PushMode.ONLINE)
