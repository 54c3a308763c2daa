"""Shared fixtures. The suite runs on the artifacts `make test` builds first: MovieLens-100K as Feast
offline sources, the materialised Feast repo and a trained bundle under var/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.bundle import Bundle, load_current
from services.common.settings import CommonSettings

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-bench", action="store_true", help="also run the slow benchmarks (marked bench)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-bench"):
        return
    skip = pytest.mark.skip(reason="benchmark: opt in with --run-bench")
    for item in items:
        if "bench" in item.keywords:
            item.add_marker(skip)


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
