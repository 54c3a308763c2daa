"""The ranking service picks up a new bundle and re-materialised item features without a restart."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pandas as pd
import pytest

from artifacts import bundle as fmt
from artifacts.bundle import Bundle
from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from services.common.server import start_and_load
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings

from ..conftest import private_feature_repo

USER = common_pb2.UserFeatures(user_id="196", age_bucket=45, gender="M", occupation="writer", interaction_count=39)
ITEMS = [str(i) for i in range(1, 201)]


def _copy_as(source: Bundle, bundle_dir: Path, version: str) -> None:
    """Publishes a copy of `source` under another version (what a retrain publishes)."""
    staged = bundle_dir.parent / f".staged-{version}"
    shutil.copytree(source.path, staged)
    (staged / fmt.MANIFEST).unlink()
    fmt.publish(bundle_dir, staged, replace(source.manifest, version=version))


async def test_a_new_bundle_is_served_without_a_restart(bundle: Bundle, common_settings, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    _copy_as(bundle, bundles, "20990101T000000Z")
    common = common_settings.model_copy(update={"bundle_dir": bundles})
    app = RankingApp(RankingSettings(port=0, refresh_seconds=0, grace_seconds=0.2), common)
    server = await start_and_load(app)
    try:
        stub = ranking_pb2_grpc.RankingServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS)
        assert (await stub.Rank(request)).bundle_version == "20990101T000000Z"
        _copy_as(bundle, bundles, "20990102T000000Z")
        # Calls in flight during the switch all succeed, on one bundle or the other.
        replies = await asyncio.gather(*(stub.Rank(request) for _ in range(20)), app.refresh())
        versions = {r.bundle_version for r in replies[:-1]}
        assert versions <= {"20990101T000000Z", "20990102T000000Z"}
        after = await stub.Rank(request)
        assert after.bundle_version == "20990102T000000Z" and len(after.scores) == len(ITEMS)
    finally:
        await server.stop(0)


async def test_rematerialised_item_features_are_picked_up(common_settings, offline_dir: Path, tmp_path: Path) -> None:
    repo = private_feature_repo(tmp_path, offline_dir)
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    store.materialize_incremental(end_date=datetime.now(UTC))  # the baseline: views marked as materialised
    app = RankingApp(
        RankingSettings(port=0, refresh_seconds=0), common_settings.model_copy(update={"feature_repo": repo})
    )
    server = await start_and_load(app)
    try:
        stub = ranking_pb2_grpc.RankingServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        request = ranking_pb2.RankRequest(user=USER, item_ids=["1679", "1", "50"])
        before = list((await stub.Rank(request)).scores)

        # An obscure item suddenly becomes the most popular, best rated item (new statistics materialised).
        store.write_to_online_store(
            "item_stats",
            pd.DataFrame(
                {
                    "item_id": ["1679"],
                    "popularity": [50_000],
                    "mean_rating": [4.9],
                    "recent_popularity": [20_000],
                    "event_timestamp": [datetime.now(UTC)],
                }
            ),
        )
        assert list((await stub.Rank(request)).scores) == before, "features are held in memory until a refresh"
        await app.refresh()
        assert list((await stub.Rank(request)).scores) == before, "re-read only when the views are materialised"
        # A later run covers only the time since the baseline (no new source rows): it moves the marks.
        store.materialize_incremental(end_date=datetime.now(UTC))
        await app.refresh()
        after = list((await stub.Rank(request)).scores)
        assert after[0] != pytest.approx(before[0], abs=1e-6), "the refreshed item scores differently"
        assert after[1:] == pytest.approx(before[1:], abs=1e-6), "the other items are unchanged"
        assert json.dumps(after)  # plain floats
    finally:
        await server.stop(0)
