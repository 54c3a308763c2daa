"""Feedback reaches the features: RecordFeedback pushes the user's new activity row through Feast, so the
very next Recommend sees it. Runs on a private copy of the Feast repository (pushes change the online store)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.server import RunningServer, start_and_load
from services.common.settings import CommonSettings
from services.gateway.servicer import GatewayApp
from services.gateway.user_features import UserFeatureReader

from ..conftest import private_feature_repo
from .conftest import Servers, gateway_settings


@dataclass
class FreshGateway:
    app: GatewayApp
    stub: gateway_pb2_grpc.GatewayServiceStub
    reader: UserFeatureReader


@pytest_asyncio.fixture(scope="module")
async def fresh(
    stage_servers: Servers, bundle, offline_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FreshGateway]:
    tmp = tmp_path_factory.mktemp("fresh")
    repo = private_feature_repo(tmp, offline_dir)
    common = CommonSettings(feature_repo=repo)
    app = GatewayApp(gateway_settings(stage_servers, tmp, push_features=True), common)
    server: RunningServer = await start_and_load(app)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield FreshGateway(app, gateway_pb2_grpc.GatewayServiceStub(channel), UserFeatureReader(repo, "gateway_user_v1"))
    await channel.close()
    await server.stop(0)


def _event(user: str, item: str, kind: int = gateway_pb2.FEEDBACK_TYPE_CLICK, value: float = 0.0):
    return gateway_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, user_id=user, item_id=item, type=kind, value=value)


async def test_a_click_leaves_the_next_recommendations(fresh: FreshGateway) -> None:
    before = await fresh.stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10))
    features = fresh.reader.read("196")
    clicked = before.items[0].item_id
    reply = await fresh.stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[_event("196", clicked)]))
    assert (reply.accepted, reply.duplicates) == (1, 0)

    after = await fresh.stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10))
    assert clicked not in [i.item_id for i in after.items] and len(after.items) == 10
    updated = fresh.reader.read("196")
    assert updated.recent_item_ids[0] == clicked
    assert list(updated.recent_item_ids[1:]) == list(features.recent_item_ids[:19])
    assert updated.interaction_count == features.interaction_count + 1
    assert updated.age_bucket == features.age_bucket, "the profile view is untouched"


async def test_a_retried_batch_is_not_counted_twice(fresh: FreshGateway) -> None:
    before = fresh.reader.read("42")
    batch = gateway_pb2.RecordFeedbackRequest(
        events=[_event("42", "1"), _event("42", "2", gateway_pb2.FEEDBACK_TYPE_RATING, 5.0)]
    )
    await fresh.stub.RecordFeedback(batch)
    retry = await fresh.stub.RecordFeedback(batch)
    assert retry.duplicates == 2
    after = fresh.reader.read("42")
    assert after.interaction_count == before.interaction_count + 2
    expected_mean = (before.mean_rating * before.interaction_count + 5.0) / (before.interaction_count + 1)
    assert after.mean_rating == pytest.approx(expected_mean, rel=1e-5)


async def test_a_new_user_who_clicks_gets_candidates_from_that_click(fresh: FreshGateway) -> None:
    user = f"visitor-{uuid.uuid4().hex[:8]}"
    cold = await fresh.stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, count=10))
    assert cold.cold_start and {i.source for i in cold.items} == {common_pb2.CANDIDATE_SOURCE_POPULAR}

    await fresh.stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[_event(user, "50")]))
    warm = await fresh.stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, count=10))
    assert not warm.cold_start and len(warm.items) == 10
    # The query tower embeds the fresh history at request time; neighbours of the clicked item and the items
    # its EASE weights point to join in, and the fresh-items quota may place a new release. No cold-start
    # (popular) candidates any more.
    personal = {
        common_pb2.CANDIDATE_SOURCE_EMBEDDING,
        common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS,
        common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY,
    }
    sources = [i.source for i in warm.items]
    assert set(sources) <= personal | {common_pb2.CANDIDATE_SOURCE_FRESH}, sources
    assert sum(s in personal for s in sources) > len(sources) / 2, sources
    assert "50" not in [i.item_id for i in warm.items]
    features = fresh.reader.read(user)
    assert list(features.recent_item_ids) == ["50"] and features.interaction_count == 1


async def test_a_failed_push_still_stores_and_acknowledges(
    fresh: FreshGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert fresh.app.activity is not None and fresh.app.event_log is not None
    monkeypatch.setattr(fresh.app.activity, "push_source", "no_such_push_source")
    stored = await fresh.app.event_log.count()
    with caplog.at_level(logging.ERROR, logger="services.gateway.fresh_features"):
        reply = await fresh.stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[_event("7", "50")]))
    assert (reply.accepted, reply.duplicates) == (1, 0)
    assert await fresh.app.event_log.count() == stored + 1
    assert "push of 1 events failed" in caplog.text
