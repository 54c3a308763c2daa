"""Training learns from live feedback: events stored by the event log reach the training data through the Feast
offline store, for the embedded file store (SQLite log exported to Parquet) and for PostgreSQL (the log table)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.gateway.eventlog import Event
from services.gateway.eventlog.postgres import PostgresEventLog
from services.gateway.eventlog.sqlite import SqliteEventLog
from training.data.training_data import IMPLICIT_RATING, read_training_frames

from ..conftest import REPO, copy_feature_repo, feast_postgres_env, run_async, run_feast

pytestmark = pytest.mark.e2e


def _events(now: float) -> list[Event]:
    return [
        Event("e1", "1", "50", "rating", 2.0, now - 60),
        Event("e2", "1", "1000", "click", 1.0, now - 30),
        Event("e3", "new-user-7", "50", "purchase", 1.0, now - 20),
        Event("e4", "1", "51", "view", 1.0, now - 10),  # views are not training positives
        Event("e5", "1", "no-such-item", "click", 1.0, now - 5),  # not in the catalogue: dropped
    ]


def _check(inter, users, base_rows: int) -> None:  # type: ignore[no-untyped-def]
    assert len(inter) == base_rows + 3
    fresh = inter.tail(3)
    assert fresh[["user_id", "item_id"]].values.tolist() == [["1", "50"], ["1", "1000"], ["new-user-7", "50"]]
    assert fresh["rating"].tolist() == [2.0, IMPLICIT_RATING, IMPLICIT_RATING]
    assert "new-user-7" in set(users["user_id"])
    assert inter["event_timestamp"].is_monotonic_increasing


async def _append_sqlite(path: Path, events: list[Event]) -> None:
    log = SqliteEventLog(path)
    await log.open()
    await log.append(events)
    await log.close()


async def _append_postgres(dsn: str, schema: str, events: list[Event]) -> None:
    log = PostgresEventLog(dsn, schema=schema)
    await log.open()
    try:
        await log.append(events)
    finally:
        await log.close()


def test_file_store_reads_the_exported_sqlite_log(offline_dir: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    for parquet in offline_dir.glob("*.parquet"):
        if parquet.name != "feedback_events.parquet":
            (sources / parquet.name).symlink_to(parquet)
    run_async(_append_sqlite(tmp_path / "events.db", _events(time.time())))
    exported = subprocess.run(
        [sys.executable, "-m", "training.data.event_export", "--event-log", str(tmp_path / "events.db"),
         "--out", str(sources)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "exported 5 feedback events" in exported.stderr
    repo = copy_feature_repo(tmp_path / "feast", sources)
    run_feast(repo, "apply")
    inter, users, _ = read_training_frames(repo)
    _check(inter, users, 100_000)


def test_postgres_store_reads_the_event_log_table(
    offline_dir: Path, postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, **feast_postgres_env(postgres_dsn, pg_schema), "RECSYS_GATEWAY_EVENT_LOG_SCHEMA": pg_schema}
    loaded = subprocess.run(
        [sys.executable, "-m", "training.prepare", "--out", str(tmp_path / "parquet"),
         "--source", str(REPO / "var/data/raw/ml-100k"), "--postgres", postgres_dsn, "--schema", pg_schema],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    run_async(_append_postgres(postgres_dsn, pg_schema, _events(datetime.now(UTC).timestamp())))
    repo = copy_feature_repo(tmp_path, offline_dir, (REPO / "features/environments/postgres.yaml").read_text())
    run_feast(repo, "apply", env=env)
    for name, value in env.items():
        if name.startswith(("FEAST_PG_", "PGPASSWORD")):
            monkeypatch.setenv(name, value)
    inter, users, _ = read_training_frames(repo)
    _check(inter, users, 100_000)
