"""The production feature store, driven by the Feast CLI as users drive it: registry, offline store and online
store on PostgreSQL (features/environments/postgres.yaml), sources loaded by `training.prepare --postgres`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ..conftest import REPO, copy_feature_repo, feast_postgres_env, run_feast

pytestmark = pytest.mark.e2e


def test_apply_materialize_and_point_in_time_reads_from_postgres(
    offline_dir: Path, postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, **feast_postgres_env(postgres_dsn, pg_schema)}
    loaded = subprocess.run(
        [sys.executable, "-m", "training.prepare", "--out", str(tmp_path / "parquet"),
         "--source", str(REPO / "var/data/raw/ml-100k"), "--postgres", postgres_dsn, "--schema", pg_schema],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "loaded into PostgreSQL schema" in loaded.stderr

    repo = copy_feature_repo(tmp_path, offline_dir, (REPO / "features/environments/postgres.yaml").read_text())

    def run(*args: str) -> str:
        return run_feast(repo, *args, env=env)

    run("apply")
    run("materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    from feast import FeatureStore

    for name, value in feast_postgres_env(postgres_dsn, pg_schema).items():
        monkeypatch.setenv(name, value)  # the SDK expands ${VAR} from the environment
    store = FeatureStore(repo_path=str(repo))
    assert store.config.offline_store.type == "postgres" and store.config.online_store.type == "postgres"
    assert type(store.get_feature_view("user_activity").batch_source).__name__ == "PostgreSQLSource"

    activity = pd.read_parquet(offline_dir / "user_activity.parquet")
    mine = activity[activity["user_id"] == "1"].sort_values("event_timestamp")
    online = store.get_online_features(
        features=store.get_feature_service("gateway_user_v1"), entity_rows=[{"user_id": "1"}]
    ).to_dict()
    assert online["interaction_count"] == [mine.iloc[-1]["interaction_count"]]
    assert online["recent_item_ids"][0] == list(mine.iloc[-1]["recent_item_ids"])

    # Point in time: as of a moment between user 1's first two snapshots, only the first one is visible.
    first, second = mine.iloc[0], mine.iloc[1]
    between = first["event_timestamp"] + (second["event_timestamp"] - first["event_timestamp"]) / 2
    history = (
        store.get_historical_features(
            entity_df=pd.DataFrame({"user_id": ["1", "1"], "event_timestamp": [between, second["event_timestamp"]]}),
            features=["user_activity:interaction_count", "user_profile:occupation"],
        )
        .to_df()
        .sort_values("event_timestamp")
    )
    assert history["interaction_count"].tolist() == [first["interaction_count"], second["interaction_count"]]
    assert set(history["occupation"]) == {"technician"}
