"""The Feast repository driven by the Feast CLI, as users drive it: apply, materialize-incremental, read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ..conftest import copy_feature_repo, run_feast

pytestmark = pytest.mark.e2e


def test_apply_materialize_and_read_back(offline_dir: Path, tmp_path: Path) -> None:
    repo = copy_feature_repo(tmp_path, offline_dir)

    def run(*args: str) -> str:
        return run_feast(repo, *args)

    applied = run("apply")
    for name in (
        "user_profile",
        "user_activity",
        "item_profile",
        "item_stats",
        "gateway_user_v1",
        "ranking_v1",
    ):
        assert name in applied
    run("materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    assert "user_activity" in run("feature-views", "list")

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    got = store.get_online_features(
        features=store.get_feature_service("gateway_user_v1"),
        entity_rows=[{"user_id": "196"}, {"user_id": "nobody"}],
    ).to_dict()
    activity = pd.read_parquet(offline_dir / "user_activity.parquet")
    latest = activity[activity["user_id"] == "196"].sort_values("event_timestamp").iloc[-1]
    assert got["interaction_count"] == [latest["interaction_count"], None]
    assert got["recent_item_ids"][0] == list(latest["recent_item_ids"])
    assert got["gender"][0] == "M" and got["age_bucket"][0] == 45
