from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from services.gateway.eventlog import Event
from services.gateway.fresh_features import RECENT_ITEMS, Activity, activity_frame, fold


def _event(item: str, ts: float, kind: str = "click", value: float = 1.0) -> Event:
    return Event(f"e-{item}-{ts}", "u", item, kind, value, ts)


def test_new_items_go_first_newest_first_without_repeats_and_truncated() -> None:
    current = Activity(
        interaction_count=30,
        mean_rating=4.0,
        recent_item_ids=[str(i) for i in range(RECENT_ITEMS)],
        last_active=datetime.fromtimestamp(2_000, UTC),
    )
    updated = fold(current, [_event("a", 1_000), _event("b", 3_000), _event("5", 2_500)])
    assert updated.recent_item_ids[:4] == ["b", "5", "a", "0"]
    assert len(updated.recent_item_ids) == RECENT_ITEMS and updated.recent_item_ids.count("5") == 1
    assert updated.interaction_count == 33 and updated.mean_rating == 4.0, "clicks do not move the mean"
    assert updated.last_active == datetime.fromtimestamp(3_000, UTC)


def test_ratings_update_the_running_mean_and_a_first_rating_sets_it() -> None:
    rated = fold(Activity(interaction_count=3, mean_rating=4.0), [_event("x", 10, "rating", 2.0)])
    assert rated.mean_rating == (4.0 * 3 + 2.0) / 4
    first = fold(Activity(), [_event("x", 10, "rating", 5.0), _event("y", 11, "rating", 3.0)])
    assert first.mean_rating == 4.0 and first.interaction_count == 2 and first.recent_item_ids == ["y", "x"]


def test_older_events_do_not_move_last_active_back() -> None:
    current = Activity(interaction_count=1, recent_item_ids=["z"], last_active=datetime.fromtimestamp(9_000, UTC))
    assert fold(current, [_event("a", 100)]).last_active == current.last_active


def test_the_frame_matches_the_push_source_schema() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    frame = activity_frame({"u2": fold(Activity(), [_event("a", 100)]), "u1": Activity()}, now)
    assert list(frame["user_id"]) == ["u1", "u2"]
    assert str(frame["interaction_count"].dtype) == "int64" and str(frame["mean_rating"].dtype) == "float32"
    assert frame["recent_item_ids"].tolist() == [[], ["a"]]
    assert pd.isna(frame["last_active"][0]) and frame["event_timestamp"][0] == pd.Timestamp(now)
