"""The stages answer the same in either compute mode (inline on the event loop, or in a worker pool), and the
candidate stage's `auto` mode puts an exact search inline and an ANN search in the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.candidate.servicer import CandidateApp
from services.candidate.settings import CandidateSettings
from services.common.server import start_and_load
from services.common.settings import CommonSettings
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings
from services.rerank.servicer import RerankApp
from services.rerank.settings import RerankSettings

from .conftest import Servers

USER = common_pb2.UserFeatures(user_id="196", age_bucket=45, gender="M", occupation="writer", interaction_count=39)
ITEMS = [str(i) for i in range(1, 501)]


@pytest_asyncio.fixture(scope="module")
async def pooled(common_settings: CommonSettings) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    apps = {
        "candidate": CandidateApp(CandidateSettings(port=0, compute="pool"), common_settings),
        "ranking": RankingApp(RankingSettings(port=0, compute="pool"), common_settings),
        "rerank": RerankApp(RerankSettings(port=0, compute="pool"), common_settings),
    }
    servers = {name: await start_and_load(app) for name, app in apps.items()}
    channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for name, s in servers.items()}
    yield channels
    for name, server in servers.items():
        await channels[name].close()
        await server.stop(0)


async def test_pool_and_inline_stages_give_identical_answers(
    pooled: dict[str, grpc.aio.Channel], channel_to: dict[str, grpc.aio.Channel], stage_servers: Servers
) -> None:
    inline_candidate = stage_servers.candidate.app
    assert isinstance(inline_candidate, CandidateApp) and inline_candidate.retriever is not None
    assert inline_candidate.retriever.index.exact, "the MovieLens bundle is served by exact search"
    assert inline_candidate.runner_for(inline_candidate.retriever).executor is None, "auto: exact search inline"

    retrieve = candidate_pb2.RetrieveRequest(user_id="196", count=500)
    rank = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS)
    rank.context.request_time.FromSeconds(1_700_000_000)
    answers = []
    for channels in (channel_to, pooled):
        candidates = await candidate_pb2_grpc.CandidateServiceStub(channels["candidate"]).Retrieve(retrieve)
        similar = await candidate_pb2_grpc.CandidateServiceStub(channels["candidate"]).SimilarItems(
            candidate_pb2.SimilarItemsRequest(item_id="50", count=20)
        )
        scores = await ranking_pb2_grpc.RankingServiceStub(channels["ranking"]).Rank(rank)
        reranked = await rerank_pb2_grpc.RerankServiceStub(channels["rerank"]).Rerank(
            rerank_pb2.RerankRequest(
                user_id="196", item_ids=ITEMS, scores=list(scores.scores), count=20, diversity=0.5, explain=True
            )
        )
        answers.append(
            (
                list(candidates.item_ids),
                list(similar.item_ids),
                list(scores.scores),
                list(reranked.indices),
                list(reranked.reasons),
            )
        )
    assert answers[0] == answers[1]


async def test_auto_puts_an_ann_search_in_the_pool(common_settings: CommonSettings) -> None:
    app = CandidateApp(CandidateSettings(port=0, index_type="hnsw"), common_settings)
    server = await start_and_load(app)
    try:
        assert app.retriever is not None and not app.retriever.index.exact
        runner = app.runner_for(app.retriever)
        assert runner is app.pool and runner.executor is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = await candidate_pb2_grpc.CandidateServiceStub(channel).Retrieve(
                candidate_pb2.RetrieveRequest(user_id="196", count=200)
            )
        assert len(reply.item_ids) == 200 == len(set(reply.item_ids))
    finally:
        await server.stop(0)
