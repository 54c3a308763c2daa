"""One contract over every online store the project ships a configuration for: the same writes (a push and a
direct write) and reads (get_online_features) against SQLite (embedded default), Redis and PostgreSQL, each
through its feature_store.yaml with the real servers (addresses from RECSYS_TEST_POSTGRES_DSN and
RECSYS_TEST_REDIS_URL; skipped locally, failed in CI, when they are unreachable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from ..conftest import REDIS_URL, REPO, RUN_ID, copy_feature_repo, feast_postgres_env, require, run_feast

ENVIRONMENTS = {"sqlite": "feature_store.yaml", "redis": "postgres-redis.yaml", "postgres": "postgres.yaml"}
ACTIVITY = ["user_activity:interaction_count", "user_activity:mean_rating", "user_activity:recent_item_ids"]


def _redis_address() -> str:
    import redis

    url = urlsplit(REDIS_URL)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        require(False, f"Redis at RECSYS_TEST_REDIS_URL={REDIS_URL} is unreachable: {exc}")
    db = (url.path or "/0").strip("/") or "0"
    password = f",password={url.password}" if url.password else ""
    return f"{url.hostname or '127.0.0.1'}:{url.port or 6379},db={db}{password}"


@pytest.fixture(scope="module", params=list(ENVIRONMENTS))
def store(
    request: pytest.FixtureRequest, offline_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """The project's Feast repository over one online store: applied, empty, torn down afterwards. Tests use
    user ids of their own, so they share one applied store per backend."""
    from feast import FeatureStore

    tmp = tmp_path_factory.mktemp(request.param)
    # A project (and PostgreSQL schema) of its own: Redis keys and PostgreSQL tables carry it, so runs never
    # share data.
    project = f"{RUN_ID}_{uuid.uuid4().hex[:6]}"
    env: dict[str, str] = {}
    dsn = ""
    if request.param != "sqlite":
        dsn = request.getfixturevalue("postgres_dsn")
        env = feast_postgres_env(dsn, project)
        _postgres(dsn, "CREATE SCHEMA {}", project)
    if request.param == "redis":
        env["FEAST_REDIS"] = _redis_address()

    yaml = REPO / "features" / ("" if request.param == "sqlite" else "environments") / ENVIRONMENTS[request.param]
    repo = copy_feature_repo(tmp, offline_dir, yaml.read_text().replace("project: recsys", f"project: {project}"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            run_feast(repo, "apply", env=dict(os.environ))
            fs = FeatureStore(repo_path=str(repo))
            assert fs.config.online_store.type == request.param
            yield fs
            fs.teardown()
        finally:
            if dsn:
                _postgres(dsn, "DROP SCHEMA IF EXISTS {} CASCADE", project)


def _postgres(dsn: str, statement: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))  # type: ignore[arg-type]


def _activity(users: list[str], count: int, at: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users,
            "interaction_count": pd.Series([count + i for i in range(len(users))], dtype="int64"),
            "mean_rating": pd.Series([3.5] * len(users), dtype="float32"),
            "recent_item_ids": [[f"{u}-item", "50"] for u in users],
            "last_active": pd.Timestamp(at),
            "event_timestamp": pd.Timestamp(at),
        }
    )


def test_push_then_read(store) -> None:
    from feast.data_source import PushMode

    now = datetime.now(UTC)
    store.push("user_activity_push", _activity(["p1", "p2"], 7, now), to=PushMode.ONLINE)
    got = store.get_online_features(
        features=[*ACTIVITY, "user_activity:last_active"],
        entity_rows=[{"user_id": "p1"}, {"user_id": "p2"}, {"user_id": "nobody"}],
    ).to_dict()
    assert got["interaction_count"] == [7, 8, None]
    assert got["mean_rating"][:2] == pytest.approx([3.5, 3.5]) and got["mean_rating"][2] is None
    assert got["recent_item_ids"] == [["p1-item", "50"], ["p2-item", "50"], None]
    assert abs(got["last_active"][0].timestamp() - now.timestamp()) < 1


def test_a_newer_row_replaces_the_older_one(store) -> None:
    from feast.data_source import PushMode

    now = datetime.now(UTC)
    store.push("user_activity_push", _activity(["n1"], 1, now - timedelta(minutes=5)), to=PushMode.ONLINE)
    store.push("user_activity_push", _activity(["n1"], 2, now), to=PushMode.ONLINE)
    got = store.get_online_features(features=ACTIVITY, entity_rows=[{"user_id": "n1"}]).to_dict()
    assert got["interaction_count"] == [2]


def test_write_to_online_store_and_read_through_a_feature_service(store) -> None:
    now = pd.Timestamp(datetime.now(UTC))
    profile = pd.DataFrame(
        {
            "user_id": ["u9"],
            "age_bucket": pd.Series([25], dtype="int64"),
            "gender": ["F"],
            "occupation": ["writer"],
            "zip_prefix": ["941"],
            "event_timestamp": [now],
        }
    )
    store.write_to_online_store("user_profile", profile)
    store.push("user_activity_push", _activity(["u9"], 3, now.to_pydatetime()))
    got = store.get_online_features(
        features=store.get_feature_service("gateway_user_v1"), entity_rows=[{"user_id": "u9"}]
    ).to_dict()
    assert (got["age_bucket"], got["gender"], got["occupation"]) == ([25], ["F"], ["writer"])
    assert got["interaction_count"] == [3] and got["recent_item_ids"] == [["u9-item", "50"]]
