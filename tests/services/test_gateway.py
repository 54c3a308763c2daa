from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.ranking.v1 import ranking_pb2_grpc
from services.common.server import build_server, start_and_load
from services.gateway.servicer import GatewayApp
from services.gateway.user_features import UserFeatureReader
from tools.stack import free_port

from ..conftest import REPO, copy_feature_repo, run_feast
from .conftest import Servers, gateway_settings

STAGE = common_pb2.Stage


@pytest.fixture(scope="module")
def stub(gateway_server) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway_server.port}")
    return gateway_pb2_grpc.GatewayServiceStub(channel)


@pytest.fixture(scope="module")
def catalogue() -> pd.DataFrame:
    return pd.read_parquet(REPO / "var/data/feast/items.parquet").set_index("item_id")


@pytest.fixture(scope="module")
def rated() -> dict[str, set[str]]:
    inter = pd.read_parquet(REPO / "var/data/feast/interactions.parquet", columns=["user_id", "item_id"])
    return inter.groupby("user_id")["item_id"].agg(set).to_dict()


#: Sources built from the user's own profile and history (not popularity fallbacks).
PERSONAL_SOURCES = {common_pb2.CANDIDATE_SOURCE_EMBEDDING, common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY}


async def test_recommend_runs_every_stage(stub, catalogue, rated) -> None:
    reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=12, explain=True))
    assert len(reply.items) == 12 and len({i.item_id for i in reply.items}) == 12
    assert not reply.degraded_stages and not reply.cold_start and reply.bundle_version and reply.request_id
    finals = [i.score for i in reply.items]
    assert finals == sorted(finals, reverse=True), "final scores descend with the position"
    for item in reply.items:
        assert item.item_id in catalogue.index and item.item_id not in rated["196"]
        assert item.stage_scores.retrieval != 0 and 0 < item.stage_scores.ranking < 1
        assert item.score == item.stage_scores.rerank
        assert item.source in PERSONAL_SOURCES and item.reason
        assert item.info.title == catalogue.loc[item.item_id, "title"]


async def test_filters_and_exclusions_are_honoured(stub, catalogue) -> None:
    plain = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10))
    excluded = [i.item_id for i in plain.items[:3]]
    reply = await stub.Recommend(
        gateway_pb2.RecommendRequest(
            user_id="196",
            count=10,
            exclude_item_ids=excluded,
            filter=common_pb2.ItemFilter(include_genres=["Comedy"], exclude_genres=["Romance"]),
        )
    )
    assert len(reply.items) == 10
    for item in reply.items:
        genres = list(catalogue.loc[item.item_id, "genres"])
        assert "Comedy" in genres and "Romance" not in genres and item.item_id not in excluded
    assert not item.reason, "no reasons unless asked"


async def test_diversity_changes_the_list(stub) -> None:
    # No graph or history-affinity blend: with diversity 0 the rerank stage must then keep the ranking order.
    base = {"user_id": "42", "count": 10, "graph_weight": 0.0, "affinity_weight": 0.0}
    focused = await stub.Recommend(gateway_pb2.RecommendRequest(**base, diversity=0.0))
    diverse = await stub.Recommend(gateway_pb2.RecommendRequest(**base, diversity=0.9))
    assert [i.item_id for i in focused.items] != [i.item_id for i in diverse.items]
    ranking = [i.stage_scores.ranking for i in focused.items]
    assert ranking == sorted(ranking, reverse=True), "diversity 0 keeps the ranking order"


async def test_unknown_user_gets_a_cold_start_list(stub) -> None:
    reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="visitor-123", count=10, explain=True))
    assert reply.cold_start and len(reply.items) == 10 and not reply.degraded_stages
    assert {i.source for i in reply.items} == {common_pb2.CANDIDATE_SOURCE_POPULAR}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"user_id": "196", "count": 0}, "count must be at least 1"),
        ({"user_id": "196", "count": -3}, "count must be at least 1"),
        ({"user_id": "196", "count": 2_000_000_000}, "count must be at most 100"),
        ({"user_id": "", "count": 5}, "user_id is required"),
        ({"user_id": "x" * 65, "count": 5}, "at most 64"),
        ({"user_id": "196;drop", "count": 5}, "malformed"),
        ({"user_id": "196", "count": 5, "exclude_item_ids": [""]}, "exclude_item_ids[0] is required"),
        ({"user_id": "196", "count": 5, "diversity": 1.5}, "between 0 and 1"),
        ({"user_id": "196", "count": 5, "diversity": math.nan}, "between 0 and 1"),
        ({"user_id": "196", "count": 5, "graph_weight": -0.1}, "graph_weight"),
        ({"user_id": "196", "count": 5, "affinity_weight": 2.0}, "affinity_weight"),
        ({"user_id": "196", "count": 5, "diversity_method": 7}, "diversity_method 7 is not a known method"),
        (
            {"user_id": "196", "count": 5, "filter": common_pb2.ItemFilter(exclude_genres=["Anime"])},
            "known genres",
        ),
    ],
)
async def test_bad_recommend_requests(stub, fields, fragment) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Recommend(gateway_pb2.RecommendRequest(**fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details() and "Traceback" not in info.value.details()


async def test_similar_items(stub) -> None:
    reply = await stub.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id="50", count=5))
    assert len(reply.items) == 5 and all(i.info.title for i in reply.items)
    for item_id, code in [("424242", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id=item_id, count=5))
        assert info.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id="50", count=0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_feedback_is_idempotent_and_rejects_per_event(stub) -> None:
    good = [
        gateway_pb2.FeedbackEvent(event_id=f"t-{i}", user_id="196", item_id="50", type=gateway_pb2.FEEDBACK_TYPE_VIEW)
        for i in range(5)
    ]
    bad = gateway_pb2.FeedbackEvent(
        event_id="t-bad", user_id="196", item_id="50", type=gateway_pb2.FEEDBACK_TYPE_RATING, value=11
    )
    first = await stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[*good, bad]))
    assert (first.accepted, first.duplicates) == (5, 0)
    assert [(r.index, r.event_id) for r in first.rejected] == [(5, "t-bad")] and "rating" in first.rejected[0].reason
    retry = await stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=good))
    assert (retry.accepted, retry.duplicates) == (5, 5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "events is empty" in info.value.details()
    # An oversized batch: the first 1,000 (the limit) are stored, the rest rejected per event with the reason.
    oversized = [
        gateway_pb2.FeedbackEvent(event_id=f"big-{i}", user_id="196", item_id="50", type=gateway_pb2.FEEDBACK_TYPE_VIEW)
        for i in range(1002)
    ]
    reply = await stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=oversized))
    assert (reply.accepted, reply.duplicates) == (1000, 0)
    assert [(r.index, r.event_id) for r in reply.rejected] == [(1000, "big-1000"), (1001, "big-1001")]
    assert all("batch limit of 1000" in r.reason for r in reply.rejected)


@pytest_asyncio.fixture
async def gateway_with(stage_servers: Servers, common_settings, tmp_path: Path):
    """Starts a gateway whose listed stages point at a closed port; yields its stub."""
    started = []

    async def start(*dead: str) -> gateway_pb2_grpc.GatewayServiceStub:
        overrides = {f"{stage}_address": f"127.0.0.1:{free_port()}" for stage in dead}
        settings = gateway_settings(stage_servers, tmp_path, **overrides)
        server = await start_and_load(GatewayApp(settings, common_settings))
        started.append(server)
        return gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))

    yield start
    for server in started:
        await server.stop(0)


async def test_ranking_down_answers_in_retrieval_order(gateway_with) -> None:
    stub = await gateway_with("ranking")
    request = gateway_pb2.RecommendRequest(
        user_id="196", count=10, diversity=0.0, graph_weight=0.0, affinity_weight=0.0
    )
    reply = await stub.Recommend(request)
    assert list(reply.degraded_stages) == [STAGE.Value("STAGE_RANKING")] and len(reply.items) == 10
    retrieval = [i.stage_scores.retrieval for i in reply.items]
    assert retrieval == sorted(retrieval, reverse=True)


async def test_dpp_and_graph_weight_reach_the_rerank_stage(stub) -> None:
    base = {"user_id": "196", "count": 10, "diversity": 0.6}
    mmr = await stub.Recommend(gateway_pb2.RecommendRequest(**base, diversity_method=common_pb2.DIVERSITY_METHOD_MMR))
    dpp = await stub.Recommend(gateway_pb2.RecommendRequest(**base, diversity_method=common_pb2.DIVERSITY_METHOD_DPP))
    for reply in (mmr, dpp):
        assert len(reply.items) == 10 and len({i.item_id for i in reply.items}) == 10 and not reply.degraded_stages
    assert [i.item_id for i in mmr.items] != [i.item_id for i in dpp.items]


async def test_rerank_down_answers_in_ranking_order(gateway_with) -> None:
    stub = await gateway_with("rerank")
    reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10, explain=True))
    assert list(reply.degraded_stages) == [STAGE.Value("STAGE_RERANK")] and len(reply.items) == 10
    ranking = [i.stage_scores.ranking for i in reply.items]
    assert ranking == sorted(ranking, reverse=True) and all(i.reason for i in reply.items)


async def test_every_stage_down_still_answers_with_unseen_popular_items(gateway_with, rated) -> None:
    stub = await gateway_with("candidate", "ranking", "rerank")
    reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10))
    assert set(reply.degraded_stages) == {STAGE.Value(f"STAGE_{s}") for s in ("CANDIDATE", "RANKING", "RERANK")}
    assert len(reply.items) == 10 and not {i.item_id for i in reply.items} & rated["196"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id="50", count=5))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


class _HangingRanking(ranking_pb2_grpc.RankingServiceServicer):
    """A ranking stage that accepts calls and never answers in time."""

    async def Rank(self, request, context):  # type: ignore[no-untyped-def]
        await asyncio.sleep(30)  # the hang under test: longer than every deadline and budget here


async def test_the_request_budget_bounds_a_hanging_stage(stage_servers: Servers, common_settings, tmp_path) -> None:
    """Ranking hangs and its own deadline (5 s) is longer than the caller's: the caller's deadline is the budget,
    so ranking is cut short and the answer (degraded, in retrieval order) arrives in time. Without a caller
    deadline, `request_budget_ms` bounds it the same way."""
    hanging = grpc.aio.server()
    ranking_pb2_grpc.add_RankingServiceServicer_to_server(_HangingRanking(), hanging)
    port = hanging.add_insecure_port("127.0.0.1:0")
    await hanging.start()
    servers = []
    try:
        for budget_ms, caller_timeout in ((5000, 1.5), (600, None)):
            settings = gateway_settings(
                stage_servers, tmp_path, ranking_address=f"127.0.0.1:{port}", ranking_timeout_ms=5000,
                request_budget_ms=budget_ms,
            )  # fmt: skip
            server = await start_and_load(GatewayApp(settings, common_settings))
            servers.append(server)
            stub = gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
            request = gateway_pb2.RecommendRequest(user_id="196", count=10, diversity=0.0)
            started = time.monotonic()
            reply = await stub.Recommend(request, timeout=caller_timeout)  # DEADLINE_EXCEEDED without a budget
            elapsed = time.monotonic() - started
            assert STAGE.Value("STAGE_RANKING") in reply.degraded_stages, (budget_ms, caller_timeout)
            assert len(reply.items) == 10 and len({i.item_id for i in reply.items}) == 10
            # Well before ranking's own 5 s deadline (the host's own delays get 0.4 s of slack).
            assert elapsed < (caller_timeout or budget_ms / 1000 + 0.4), elapsed
    finally:
        for server in servers:
            await server.stop(0)
        await hanging.stop(0)


async def test_feature_store_unreachable_answers_with_default_features(
    stage_servers: Servers, common_settings, offline_dir: Path, tmp_path: Path
) -> None:
    """The online store goes away after start-up (here: a Redis online store on a port nobody listens on):
    Recommend still answers, from default features, with the features stage marked degraded."""
    app = GatewayApp(gateway_settings(stage_servers, tmp_path), common_settings)
    server = await start_and_load(app)
    try:
        repo = copy_feature_repo(tmp_path / "unreachable", offline_dir)
        run_feast(repo, "apply")  # registry on file; then point the online store at a closed port
        yaml = (repo / "feature_store.yaml").read_text()
        online = "online_store:\n  type: sqlite\n  path: ../var/feast/online_store.db\n"
        assert online in yaml
        redis = f"online_store:\n  type: redis\n  connection_string: 127.0.0.1:{free_port()}\n"
        (repo / "feature_store.yaml").write_text(yaml.replace(online, redis))
        assert app.features is not None
        app.features.reader = UserFeatureReader(repo, app.settings.user_feature_service)
        # A restarted gateway's warm-up meets the same store: it gives up at the requests' deadline, not hangs.
        await asyncio.wait_for(app.warm_up(), timeout=2.0)
        stub = gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        for user in ("196", "no-such-user"):
            # The features read has its own deadline: a hanging store does not hold the request (Redis'
            # client alone would keep retrying the connection for seconds).
            reply = await stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, count=10), timeout=3)
            assert list(reply.degraded_stages) == [STAGE.Value("STAGE_FEATURES")], user
            assert len(reply.items) == 10 and len({i.item_id for i in reply.items}) == 10
    finally:
        await server.stop(0)


async def test_not_serving_until_loaded_and_reflection_lists_services(stage_servers, common_settings, tmp_path) -> None:
    app = GatewayApp(gateway_settings(stage_servers, tmp_path), common_settings)
    server = await build_server(app)
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Recommend(
                gateway_pb2.RecommendRequest(user_id="1", count=1)
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in info.value.details()
        await app.load()
        await server.set_serving(True)
        named = await health.Check(health_pb2.HealthCheckRequest(service="recsys.gateway.v1.GatewayService"))
        assert named.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            assert {"recsys.gateway.v1.GatewayService", "grpc.health.v1.Health"} <= names
            break
    finally:
        await server.stop(0)
