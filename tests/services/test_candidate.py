from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2

from ..conftest import REPO

POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR


@pytest.fixture(scope="module")
def stub(channel_to: dict[str, grpc.aio.Channel]) -> candidate_pb2_grpc.CandidateServiceStub:
    return candidate_pb2_grpc.CandidateServiceStub(channel_to["candidate"])


@pytest.fixture(scope="module")
def rated() -> dict[str, set[str]]:
    inter = pd.read_parquet(REPO / "var/data/feast/interactions.parquet", columns=["user_id", "item_id"])
    return inter.groupby("user_id")["item_id"].agg(set).to_dict()


@pytest.fixture(scope="module")
def genres() -> dict[str, list[str]]:
    items = pd.read_parquet(REPO / "var/data/feast/items.parquet")
    return dict(zip(items["item_id"], items["genres"].map(list), strict=True))


async def test_known_user_gets_count_unseen_embedding_candidates(stub, rated) -> None:
    reply = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="196", count=500))
    assert len(reply.item_ids) == 500 == len(set(reply.item_ids)) == len(reply.scores) == len(reply.sources)
    assert not set(reply.item_ids) & rated["196"]
    assert set(reply.sources) == {common_pb2.CANDIDATE_SOURCE_EMBEDDING} and not reply.cold_start
    assert np.all(np.diff(reply.scores) <= 1e-6), "best first"
    assert reply.bundle_version


async def test_strict_filters_still_return_count_when_enough_qualify(stub, rated, genres) -> None:
    request = candidate_pb2.RetrieveRequest(
        user_id="196",
        count=30,
        filter=common_pb2.ItemFilter(include_genres=["Documentary", "Western"], exclude_genres=["Comedy"]),
        exclude_item_ids=["1", "2"],
        recent_item_ids=["50"],
    )
    reply = await stub.Retrieve(request)
    assert len(reply.item_ids) == 30
    for item in reply.item_ids:
        assert {"Documentary", "Western"} & set(genres[item]) and "Comedy" not in genres[item]
    assert not set(reply.item_ids) & (rated["196"] | {"1", "2", "50"})


async def test_filters_that_few_items_pass_return_all_of_them(stub, genres) -> None:
    fantasy = {i for i, g in genres.items() if "Fantasy" in g}
    reply = await stub.Retrieve(
        candidate_pb2.RetrieveRequest(
            user_id="never-seen", count=500, filter=common_pb2.ItemFilter(include_genres=["Fantasy"])
        )
    )
    assert set(reply.item_ids) == fantasy


async def test_unknown_user_is_cold_start_with_popular_items(stub) -> None:
    reply = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="brand-new-user", count=20))
    assert reply.cold_start and len(reply.item_ids) == 20 and set(reply.sources) == {POPULAR}


async def test_unknown_user_with_fresh_history_gets_neighbours(stub) -> None:
    reply = await stub.Retrieve(
        candidate_pb2.RetrieveRequest(user_id="brand-new-user", count=20, recent_item_ids=["50", "181"])
    )
    assert not reply.cold_start and set(reply.sources) == {common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS}
    assert not {"50", "181"} & set(reply.item_ids)


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"user_id": "196", "count": 0}, "count must be at least 1"),
        ({"user_id": "196", "count": 10**6}, "count must be at most"),
        ({"user_id": "", "count": 5}, "user_id is required"),
        ({"user_id": "bad id!", "count": 5}, "malformed"),
        (
            {"user_id": "196", "count": 5, "filter": common_pb2.ItemFilter(include_genres=["Space Opera"])},
            "known genres",
        ),
    ],
)
async def test_bad_requests_are_invalid_argument(stub, request_kwargs, fragment) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Retrieve(candidate_pb2.RetrieveRequest(**request_kwargs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()


async def test_similar_items(stub) -> None:
    reply = await stub.SimilarItems(candidate_pb2.SimilarItemsRequest(item_id="50", count=10))
    assert len(reply.item_ids) == 10 and "50" not in reply.item_ids
    assert all(-1.0001 <= s <= 1.0001 for s in reply.scores)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SimilarItems(candidate_pb2.SimilarItemsRequest(item_id="999999", count=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "999999" in info.value.details()
