"""Shared fixtures. The suite runs on the artifacts `make test` builds first: MovieLens-100K as Feast
offline sources, the materialised Feast repo and a trained bundle under var/. The tests that use them are
marked needs_data / needs_bundle here, from the fixtures they use; `make test-fast` runs the others."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from artifacts.bundle import Bundle, load_current
from services.common.settings import CommonSettings

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# The real servers some tests run against; CI starts them, elsewhere the tests skip when they are not up.
POSTGRES_DSN = os.environ.get("RECSYS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Names of everything a test run creates in those servers start with this, so parallel runs do not collide.
RUN_ID = f"recsys_test_{uuid.uuid4().hex[:10]}"


#: The fixtures that read what `make test` builds under var/, and the marker each gives every test that uses
#: it, directly or through other fixtures. `make test-fast` deselects these markers (and e2e), so what it runs
#: needs no data and no bundle; a test that reads var/ some other way needs its fixture listed here.
BUILT_BY_MAKE_TEST = {
    "bundle": "needs_bundle",  # var/bundles (trained) and var/feast (materialised)
    "common_settings": "needs_bundle",  # the defaults every service loads from: var/bundles, features/ on var/feast
    "offline_dir": "needs_data",  # var/data/feast, the Feast offline sources
    "atomic_dir": "needs_data",  # var/data/raw/ml-100k, the downloaded MovieLens files (tests/unit/test_movielens.py)
}
E2E_DIR = Path(__file__).resolve().parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker in sorted({m for fixture, m in BUILT_BY_MAKE_TEST.items() if fixture in used}):
            item.add_marker(marker)
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker("e2e")


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` to completion from a sync test on a loop of its own. Unlike `asyncio.run`, it leaves the
    thread's current event loop alone: `asyncio.run` unsets it on exit, and a sync fixture that builds a
    grpc.aio channel later in the session then fails with "no current event loop"."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


def require(condition: bool, reason: str) -> None:
    """Skips with `reason` locally; fails in CI, where every real dependency must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def common_settings() -> CommonSettings:
    return CommonSettings()


@pytest.fixture(scope="session")
def bundle(common_settings: CommonSettings) -> Bundle:
    require(
        (common_settings.bundle_dir / "CURRENT").exists(),
        "no trained bundle under var/bundles; `make test` builds it (or run `make train`)",
    )
    require(
        (REPO / "var" / "feast" / ".materialized").exists(),
        "the Feast repo is not materialised; `make test` does it (or run `make features`)",
    )
    return load_current(common_settings.bundle_dir)


@pytest.fixture(scope="session")
def offline_dir() -> Path:
    path = REPO / "var" / "data" / "feast"
    require((path / "interactions.parquet").exists(), "no offline sources; run `make data`")
    return path


def _postgres_error(dsn: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test PostgreSQL server (RECSYS_TEST_POSTGRES_DSN); skips (fails in CI) when it is unreachable."""
    error = _postgres_error(POSTGRES_DSN)
    require(error is None, f"PostgreSQL at RECSYS_TEST_POSTGRES_DSN={POSTGRES_DSN} is unreachable: {error}")
    return POSTGRES_DSN


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh, uniquely named schema for one test; dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"{RUN_ID}_{uuid.uuid4().hex[:8]}"
    yield schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def copy_feature_repo(tmp: Path, offline_dir: Path, feature_store_yaml: str | None = None) -> Path:
    """A copy of features/ whose ../var paths resolve inside `tmp`: the shared offline sources symlinked (only
    read), an empty var/feast, and `feature_store_yaml` in place of the embedded default when given."""
    repo = tmp / "features"
    shutil.copytree(REPO / "features", repo, ignore=shutil.ignore_patterns("__pycache__", "environments"))
    if feature_store_yaml is not None:
        (repo / "feature_store.yaml").write_text(feature_store_yaml)
    (tmp / "var" / "data").mkdir(parents=True)
    (tmp / "var" / "data" / "feast").symlink_to(offline_dir)
    (tmp / "var" / "feast").mkdir()
    return repo


def run_feast(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs the Feast CLI in `repo` as a user would; its stdout, or a failure showing its stderr."""
    feast = str(Path(shutil.which("feast") or REPO / ".venv/bin/feast"))
    result = subprocess.run([feast, *args], cwd=repo, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def private_feature_repo(tmp: Path, offline_dir: Path) -> Path:
    """`copy_feature_repo` plus a copy of the materialised online store and a registry applied from the current
    definitions: a store tests may write to without touching the shared one."""
    repo = copy_feature_repo(tmp, offline_dir)
    shutil.copy2(REPO / "var" / "feast" / "online_store.db", tmp / "var" / "feast" / "online_store.db")
    run_feast(repo, "apply")
    return repo


def feast_postgres_env(dsn: str, schema: str) -> dict[str, str]:
    """The variables features/environments/*.yaml read, for one schema of the test server."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return {
        "FEAST_PG_HOST": str(params.get("host") or "127.0.0.1"),
        "FEAST_PG_PORT": str(params.get("port") or 5432),
        "FEAST_PG_DATABASE": str(params.get("dbname") or "postgres"),
        "FEAST_PG_USER": str(params.get("user") or "postgres"),
        "FEAST_PG_SSLMODE": str(params.get("sslmode") or "disable"),
        "FEAST_PG_SCHEMA": schema,
        "PGPASSWORD": str(params.get("password") or os.environ.get("PGPASSWORD", "")),
    }
