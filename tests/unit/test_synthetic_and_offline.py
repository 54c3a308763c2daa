from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.data.offline import RECENT_ITEMS, write_offline_sources
from training.data.synthetic import generate


def test_synthetic_data_has_the_schema_and_a_power_law() -> None:
    ds = generate(2_000, 5_000, interactions_per_user=15, seed=3)
    assert set(ds.interactions.columns) == {"user_id", "item_id", "rating", "timestamp"}
    assert not ds.interactions.duplicated(["user_id", "item_id"]).any()
    assert set(ds.interactions["item_id"]) <= set(ds.items["item_id"])
    counts = ds.interactions["item_id"].value_counts().to_numpy()
    top_share = counts[: len(counts) // 100].sum() / counts.sum()
    assert top_share > 0.05, "the top 1% of items should draw far more than 1% of interactions"
    assert ds.interactions["rating"].between(1, 5).all()


def test_synthetic_generation_is_deterministic() -> None:
    a, b = generate(300, 400, seed=7), generate(300, 400, seed=7)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)


def test_offline_snapshots_are_point_in_time(tmp_path: Path) -> None:
    ds = generate(200, 300, interactions_per_user=30, seed=1)
    paths = write_offline_sources(ds, tmp_path)
    activity = pd.read_parquet(paths["user_activity"])
    inter = ds.interactions
    # The last snapshot of each user counts all of their interactions ...
    last = activity.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    counts = inter.groupby("user_id").size()
    assert (last["interaction_count"] == counts.loc[last.index]).all()
    # ... and never anything that happened after the snapshot time.
    for row in activity.sample(20, random_state=0).itertuples():
        seen = inter[(inter["user_id"] == row.user_id) & (inter["timestamp"] <= row.event_timestamp)]
        assert row.interaction_count == len(seen)
        newest = seen.sort_values("timestamp", kind="stable")["item_id"].tolist()[::-1][:RECENT_ITEMS]
        assert set(row.recent_item_ids) == set(newest)
    stats = pd.read_parquet(paths["item_stats"])
    final = stats.sort_values("event_timestamp").groupby("item_id").tail(1).set_index("item_id")
    pop = inter.groupby("item_id").size()
    assert (final["popularity"] == pop.loc[final.index]).all()
    assert np.isfinite(final["mean_rating"]).all()
