from __future__ import annotations

import grpc
import pytest

from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc

USER = common_pb2.UserFeatures(
    user_id="196", age_bucket=45, gender="M", occupation="writer", interaction_count=39, mean_rating=3.6
)
ITEMS = [str(i) for i in range(1, 301)]


@pytest.fixture(scope="module")
def rank(channel_to) -> ranking_pb2_grpc.RankingServiceStub:
    return ranking_pb2_grpc.RankingServiceStub(channel_to["ranking"])


@pytest.fixture(scope="module")
def rerank(channel_to) -> rerank_pb2_grpc.RerankServiceStub:
    return rerank_pb2_grpc.RerankServiceStub(channel_to["rerank"])


async def test_rank_scores_every_candidate_in_request_order(rank) -> None:
    request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS)
    request.context.request_time.FromSeconds(1_700_000_000)
    first, second = await rank.Rank(request), await rank.Rank(request)
    assert len(first.scores) == len(ITEMS) and list(first.scores) == list(second.scores)
    assert all(0.0 < s < 1.0 for s in first.scores)
    shuffled = await rank.Rank(ranking_pb2.RankRequest(user=USER, item_ids=ITEMS[::-1], context=request.context))
    assert list(shuffled.scores) == pytest.approx(list(first.scores)[::-1], abs=1e-6)
    assert first.model_name and first.bundle_version


async def test_rank_handles_a_cold_user(rank) -> None:
    reply = await rank.Rank(
        ranking_pb2.RankRequest(user=common_pb2.UserFeatures(user_id="nobody"), item_ids=ITEMS[:10])
    )
    assert len(reply.scores) == 10


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"user": USER, "item_ids": []}, "must be at least 1"),
        ({"user": USER, "item_ids": ["1", "no-such-item"]}, "no-such-item"),
        ({"user": common_pb2.UserFeatures(), "item_ids": ["1"]}, "user.user_id is required"),
    ],
)
async def test_rank_rejects_bad_requests(rank, request_kwargs, fragment) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rank.Rank(ranking_pb2.RankRequest(**request_kwargs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.details()


async def test_rerank_honours_count_and_explains(rerank) -> None:
    scores = [1.0 - i / 300 for i in range(300)]
    base = {"user_id": "196", "item_ids": ITEMS, "scores": scores, "count": 20}
    # Without the graph blend and without diversity the ranking order is kept exactly.
    plain = await rerank.Rerank(rerank_pb2.RerankRequest(**base, diversity=0.0, graph_weight=0.0))
    assert list(plain.indices) == list(range(20)), "no diversity keeps the ranking order"
    blended = await rerank.Rerank(rerank_pb2.RerankRequest(**base, diversity=0.0, graph_weight=0.5))
    assert len(set(blended.indices)) == 20 and list(blended.indices) != list(range(20)), "graph affinity reorders"
    diverse = await rerank.Rerank(
        rerank_pb2.RerankRequest(**base, diversity=0.8, explain=True, history_item_ids=["50", "181", "172"])
    )
    assert len(set(diverse.indices)) == 20 and list(diverse.indices) != list(range(20))
    assert all(diverse.reasons) and any(r.startswith("Because you watched") for r in diverse.reasons)
    again = await rerank.Rerank(
        rerank_pb2.RerankRequest(**base, diversity=0.8, explain=True, history_item_ids=["50", "181", "172"])
    )
    assert list(again.indices) == list(diverse.indices), "deterministic"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"scores": [1.0]}, "scores has 1 entries"),
        ({"count": 0}, "count must be at least 1"),
        ({"count": 4}, "count must be at most 3"),
        ({"diversity": 2.0}, "between 0 and 1"),
        ({"item_ids": ["1", "1", "2"]}, "duplicates"),
        ({"item_ids": ["1", "2", "nope"]}, "nope"),
        ({"affinity": [1.0]}, "affinity has 1 entries"),
        ({"affinity": [1.0, float("nan"), 0.0]}, "affinity must be finite"),
        ({"affinity_weight": 1.5}, "between 0 and 1"),
    ],
)
async def test_rerank_rejects_bad_requests(rerank, overrides, fragment) -> None:
    fields = {
        "user_id": "196",
        "item_ids": ["1", "2", "3"],
        "scores": [0.3, 0.2, 0.1],
        "count": 2,
        **overrides,
    }
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rerank.Rerank(rerank_pb2.RerankRequest(**fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.details()
