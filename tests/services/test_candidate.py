from __future__ import annotations

from collections import Counter

import grpc
import numpy as np
import pandas as pd
import pytest

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2

from ..conftest import REPO

POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR
NEIGHBOURS = common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS
MERGED_SOURCES = {
    common_pb2.CANDIDATE_SOURCE_EMBEDDING,
    common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS,
    common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR,
    common_pb2.CANDIDATE_SOURCE_TRENDING,
    common_pb2.CANDIDATE_SOURCE_FRESH,
    common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY,
    POPULAR,
}


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
    counts = Counter(reply.sources)
    assert counts.most_common(1)[0][0] == common_pb2.CANDIDATE_SOURCE_EMBEDDING and not reply.cold_start
    assert set(counts) <= MERGED_SOURCES
    assert counts[common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY] > 0, "the bundle's EASE weights propose items too"
    embedding = np.asarray(reply.scores)[np.asarray(reply.sources) == common_pb2.CANDIDATE_SOURCE_EMBEDDING]
    assert np.all(np.diff(embedding) <= 1e-6), "best first within a source"
    assert reply.bundle_version
    # The bundle's EASE weights score every candidate against the user's whole history.
    assert len(reply.affinity) == 500 and np.isfinite(reply.affinity).all() and np.ptp(reply.affinity) > 0


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


async def test_unknown_user_with_fresh_history_gets_personalised_candidates(stub, bundle) -> None:
    reply = await stub.Retrieve(
        candidate_pb2.RetrieveRequest(user_id="brand-new-user", count=20, recent_item_ids=["50", "181"])
    )
    assert not reply.cold_start
    # With a query tower the fresh history makes a query vector; without one, neighbours of the history.
    expected = common_pb2.CANDIDATE_SOURCE_EMBEDDING if "query_tower" in bundle.manifest.components else NEIGHBOURS
    assert Counter(reply.sources).most_common(1)[0][0] == expected
    assert NEIGHBOURS in reply.sources
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


async def test_admin_input_is_checked_without_touching_the_shared_catalogue(channel_to, bundle) -> None:
    # Only failing calls here: the stage servers are shared with the gateway tests.
    admin = candidate_pb2_grpc.CandidateAdminServiceStub(channel_to["candidate"])
    item = candidate_pb2.ItemUpsert(item_id="new-film", title="New Film", genres=["Drama"], year=2026, embedding=[0.5])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.UpsertItems(candidate_pb2.UpsertItemsRequest(items=[item]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[0].embedding has 1 values; the index has dimension" in info.value.details()
    if "item_tower" not in bundle.manifest.components:
        item.ClearField("embedding")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await admin.UpsertItems(candidate_pb2.UpsertItemsRequest(items=[item]))
        assert "items[0].embedding is required" in info.value.details()
