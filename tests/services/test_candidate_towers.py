"""The candidate service on a small two-tower bundle built here: query tower at request time, item tower for
runtime items, segments, the admin RPCs, bundle swaps and the recall monitor (HNSW forced by settings)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import pytest_asyncio
import torch

from artifacts import bundle as fmt
from artifacts.tower_inputs import AGE_BUCKETS, DEVICES, GENDERS, ITEM_INPUTS, ITEM_OUTPUT, QUERY_INPUTS, QUERY_OUTPUT
from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.common.v1 import common_pb2
from services.candidate.query import RetrievalQuery
from services.candidate.servicer import CandidateApp
from services.candidate.settings import CandidateSettings
from services.common.server import RunningServer, start_and_load
from services.common.settings import CommonSettings
from training.data.interactions import Interactions, from_frames
from training.data.schema import age_bucket
from training.data.synthetic import generate
from training.export import export_item_tower_onnx
from training.models.segments import SegmentConfig, user_segments
from training.models.two_tower import TwoTowerConfig, TwoTowerModel, train_two_tower
from training.models.two_tower_inference import cold_item_embeddings, export_query_onnx, item_embeddings, user_vectors

from ..waiting import eventually_async

EMB = common_pb2.CANDIDATE_SOURCE_EMBEDDING
SEG = common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR
FRESH = common_pb2.CANDIDATE_SOURCE_FRESH
CONFIG = TwoTowerConfig(dim=16, user_dim=16, side_dim=4, hidden=(32,), history_len=8, epochs=1, batch_size=256,
                        random_negatives=64, title_buckets=256, title_tokens=4)  # fmt: skip


@dataclass
class Built:
    data: Interactions
    model: TwoTowerModel
    bundle_dir: Path
    features: dict[str, list[Any]]


def _publish(bundle_dir: Path, built_dir: Path, version: str, components: dict[str, Any]) -> None:
    staged = bundle_dir.parent / f"staged-{version}"
    shutil.copytree(built_dir, staged)
    manifest = fmt.Manifest(version, fmt.FORMAT_VERSION, "2026-01-01T00:00:00+00:00", "test", "synthetic",
                            ("a", "b"), components)  # fmt: skip
    fmt.publish(bundle_dir, staged, manifest)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    ds = generate(150, 240, interactions_per_user=15, seed=0)
    inter = ds.interactions.rename(columns={"timestamp": "event_timestamp"})
    users = ds.users.assign(age_bucket=ds.users["age"].map(age_bucket))
    data = from_frames(inter, users, ds.items)
    torch.manual_seed(0)
    model = train_two_tower(data, CONFIG)
    root = tmp_path_factory.mktemp("towers")
    files = root / "files"
    files.mkdir()
    uv = user_vectors(model, data)
    indptr, indices = data.seen_csr()
    popularity = data.item_popularity()
    np.savez(
        files / "retrieval.npz",
        item_ids=np.asarray(data.item_ids, dtype=str),
        item_vectors=item_embeddings(model),
        user_ids=np.asarray(data.user_ids, dtype=str),
        user_vectors=uv,
        seen_indptr=indptr,
        seen_indices=indices,
        popular_items=np.argsort(-popularity, kind="stable"),
        popularity=popularity,
    )
    export_query_onnx(model, files / "query_tower.onnx")
    export_item_tower_onnx(model.item, len(model.vocab.genres), CONFIG.title_tokens, files / "item_tower.onnx")
    seg = user_segments(uv, data, SegmentConfig(n_segments=3, top_items=40))
    np.savez(files / "segments.npz", user_ids=np.asarray(data.user_ids, dtype=str), user_segment=seg.assignments,
             centroids=seg.centroids, popular_by_segment=seg.popular_items)  # fmt: skip
    components = {
        "retrieval": {"file": "retrieval.npz", "contract": {"kind": "inner_product_embeddings", "version": 1,
                                                             "dim": CONFIG.dim, "model": "two_tower"}},
        "query_tower": {"file": "query_tower.onnx", "contract": {
            "inputs": list(QUERY_INPUTS), "output": QUERY_OUTPUT, "history_len": CONFIG.history_len, "dim": CONFIG.dim,
            "vocab": {"age_buckets": list(AGE_BUCKETS), "genders": list(GENDERS),
                      "occupations": list(model.vocab.occupations), "devices": list(DEVICES)}}},
        "item_tower": {"file": "item_tower.onnx", "contract": {
            "inputs": list(ITEM_INPUTS), "output": ITEM_OUTPUT, "genres": list(model.vocab.genres),
            "title_buckets": CONFIG.title_buckets, "title_tokens": CONFIG.title_tokens, "dim": CONFIG.dim}},
        "segments": {"file": "segments.npz", "contract": {"n_segments": 3}},
    }  # fmt: skip
    bundle_dir = root / "bundles"
    _publish(bundle_dir, files, "v1", components)
    (root / "components.json").write_text(json.dumps(components))
    rng = np.random.default_rng(0)
    items = data.items
    features = {
        "genres": [list(g) for g in items["genres"]],
        "title": items["title"].astype(str).tolist(),
        "year": items["year"].astype(int).tolist(),
        "recent_popularity": rng.integers(0, 50, len(items)).tolist(),
    }
    return Built(data, model, bundle_dir, features)


def _reader(built: Built):  # type: ignore[no-untyped-def]
    def read(repo: Path, item_ids: Sequence[str]) -> Mapping[str, list[Any]]:
        pos = {str(i): k for k, i in enumerate(built.data.item_ids)}
        return {key: [values[pos[i]] for i in item_ids] for key, values in built.features.items()}

    return read


@pytest_asyncio.fixture(scope="module")
async def server(built: Built) -> AsyncIterator[RunningServer]:
    settings = CandidateSettings(port=0, index_type="hnsw", recall_sample_rate=1.0, recall_k=20, refresh_seconds=0)
    app = CandidateApp(settings, CommonSettings(bundle_dir=built.bundle_dir), read_features=_reader(built))
    running = await start_and_load(app)
    yield running
    await running.stop(0)


@pytest_asyncio.fixture(scope="module")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.aio.Channel) -> candidate_pb2_grpc.CandidateServiceStub:
    return candidate_pb2_grpc.CandidateServiceStub(channel)


@pytest.fixture(scope="module")
def admin(channel: grpc.aio.Channel) -> candidate_pb2_grpc.CandidateAdminServiceStub:
    return candidate_pb2_grpc.CandidateAdminServiceStub(channel)


def _app(server: RunningServer) -> CandidateApp:
    assert isinstance(server.app, CandidateApp)
    return server.app


async def test_the_query_tower_matches_training_and_a_new_interaction_changes_the_candidates(
    stub, server, built
) -> None:
    app = _app(server)
    retriever = app.ready()
    assert retriever.query_tower is not None and retriever.describe()["index"]["type"] == "hnsw"
    # Parity with the torch query tower on the same inputs.
    history = [5, 9, 17]  # model rows, most recent first
    vector = retriever.query_tower.encode(3, np.array([2, 1, 1]), np.array([10, 2, 1]), history)
    with torch.no_grad():
        expected = built.model.query(torch.tensor([3]), torch.tensor([[2, 1, 1]]), torch.tensor([[10, 2, 1]]),
                                     torch.tensor([[17, 9, 5, -1, -1, -1, -1, -1]]), torch.tensor([3]))  # fmt: skip
    np.testing.assert_allclose(vector, expected.numpy()[0], atol=1e-4)

    ids = [str(i) for i in built.data.item_ids]
    first = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="1", count=50, recent_item_ids=ids[:3]))
    second = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="1", count=50, recent_item_ids=ids[100:103]))
    emb_first = [i for i, s in zip(first.item_ids, first.sources, strict=True) if s == EMB]
    emb_second = [i for i, s in zip(second.item_ids, second.sources, strict=True) if s == EMB]
    assert emb_first and emb_first != emb_second
    assert not set(ids[:3]) & set(first.item_ids)


async def test_an_unknown_user_with_demographics_gets_embedding_candidates(stub, built) -> None:
    features = common_pb2.UserFeatures(user_id="x", age_bucket=25, gender="F", occupation="artist")
    context = common_pb2.RequestContext(device=common_pb2.DEVICE_TYPE_MOBILE)
    context.request_time.FromSeconds(1_700_000_000)
    reply = await stub.Retrieve(
        candidate_pb2.RetrieveRequest(user_id="newcomer", count=40, user_features=features, context=context)
    )
    assert len(reply.item_ids) == 40 and not reply.cold_start
    assert Counter(reply.sources)[EMB] >= 20
    cold = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="newcomer", count=40))
    assert cold.cold_start and set(cold.sources) == {common_pb2.CANDIDATE_SOURCE_POPULAR}


async def test_a_new_user_placed_by_demographics_gets_their_segments_popular_items(stub, server) -> None:
    retriever = _app(server).ready()
    segments = retriever.segments
    assert segments is not None
    features = common_pb2.UserFeatures(user_id="y", age_bucket=35, gender="M", occupation="engineer")
    request = candidate_pb2.RetrieveRequest(user_id="new-y", count=100, user_features=features)
    reply = await stub.Retrieve(request)
    seg_items = [i for i, s in zip(reply.item_ids, reply.sources, strict=True) if s == SEG]
    assert seg_items and EMB in reply.sources
    vector = retriever.query_vectors.vector(
        RetrievalQuery("new-y", [], 100, user_features=features), np.empty(0, dtype=np.int64)
    )
    own = segments.popular[segments.segment_of("new-y", vector)]
    assert {retriever.item_pos[i] for i in seg_items} <= set(own.tolist())
    known = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="7", count=100))
    assert SEG not in known.sources


async def test_recall_is_sampled_in_the_background(stub, server) -> None:
    monitor = _app(server).monitor
    for u in range(1, 11):
        await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id=str(u), count=60))
    await eventually_async(lambda: monitor.samples >= 3, timeout=10, message="the monitor samples 3 of 10 requests")
    assert monitor.samples >= 3 and monitor.mean_recall is not None and monitor.mean_recall >= 0.9


async def test_upserted_items_are_embedded_by_the_item_tower_and_retrievable_at_once(
    stub, admin, server, built
) -> None:
    item = candidate_pb2.ItemUpsert(item_id="brand-new", title="Space Western (2030)", genres=["Western"], year=2030)
    reply = await admin.UpsertItems(candidate_pb2.UpsertItemsRequest(items=[item]))
    assert (reply.added, reply.updated) == (1, 0) and reply.catalogue_size == len(built.data.item_ids) + 1
    retriever = _app(server).ready()
    row = retriever.row_of("brand-new")
    assert row is not None and row >= retriever.n
    expected = cold_item_embeddings(built.model, ["Space Western (2030)"], [2030], [["Western"]])
    np.testing.assert_allclose(retriever.live.delta_vectors[row - retriever.n], expected[0], atol=1e-4)
    found = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="2", count=20))
    assert "brand-new" in found.item_ids, "the freshest item is a FRESH candidate of a known user"
    assert found.sources[list(found.item_ids).index("brand-new")] == FRESH
    similar = await stub.SimilarItems(candidate_pb2.SimilarItemsRequest(item_id="brand-new", count=5))
    assert len(similar.item_ids) == 5 and "brand-new" not in similar.item_ids


async def test_removed_items_never_come_back(stub, admin, built) -> None:
    everything = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="3", count=1000))
    gone = list(everything.item_ids[:30])
    reply = await admin.RemoveItems(candidate_pb2.RemoveItemsRequest(item_ids=gone))
    assert reply.removed == 30 and reply.already_removed == 0
    again = await admin.RemoveItems(candidate_pb2.RemoveItemsRequest(item_ids=gone[:2]))
    assert again.removed == 0 and again.already_removed == 2
    for user in ("3", "4", "stranger"):
        reply = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id=user, count=1000, recent_item_ids=gone[30:]))
        assert not set(gone) & set(reply.item_ids)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SimilarItems(candidate_pb2.SimilarItemsRequest(item_id=gone[0], count=5))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("items", "fragments"),
    [
        ([], ["items is empty"]),
        (
            [{"item_id": "ok-1", "title": "", "genres": ["Space Opera"], "year": 3000}],
            ["items[0].title is required", "unknown genre(s) 'Space Opera'", "items[0].year 3000"],
        ),
        (
            [{"item_id": "bad id!", "title": "t"}, {"item_id": "dup", "title": "t"}, {"item_id": "dup", "title": "t"}],
            ["items[0].item_id 'bad id!' is malformed", "items[2].item_id 'dup' repeats items[1]"],
        ),
        ([{"item_id": "e", "title": "t", "embedding": [0.1, 0.2]}], ["items[0].embedding has 2 values"]),
        ([{"item_id": "n", "title": "t", "embedding": [float("nan")] * 16}], ["NaN or infinite"]),
    ],
)
async def test_invalid_upserts_are_rejected_whole_with_every_reason(admin, server, items, fragments) -> None:
    size = _app(server).ready().live.size
    request = candidate_pb2.UpsertItemsRequest(items=[candidate_pb2.ItemUpsert(**i) for i in items])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.UpsertItems(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in fragments:
        assert fragment in info.value.details()
    assert _app(server).ready().live.size == size, "nothing applied"


async def test_removing_unknown_ids_is_invalid(admin) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.RemoveItems(candidate_pb2.RemoveItemsRequest(item_ids=["no-such-item"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no-such-item" in info.value.details()


async def test_a_new_bundle_swaps_in_atomically_and_keeps_runtime_changes(stub, admin, server, built) -> None:
    app = _app(server)
    old = app.ready()
    await admin.UpsertItems(candidate_pb2.UpsertItemsRequest(items=[candidate_pb2.ItemUpsert(
        item_id="added-before-swap", title="Kept", genres=["Drama"], year=2031)]))  # fmt: skip
    removed = [i for i, c in app.changes.items() if c is None]
    assert removed
    components = json.loads((built.bundle_dir.parent / "components.json").read_text())
    _publish(built.bundle_dir, built.bundle_dir / "v1", "v2", components)

    async def call() -> str:
        reply = await stub.Retrieve(candidate_pb2.RetrieveRequest(user_id="5", count=50))
        assert len(reply.item_ids) == 50 and not set(removed) & set(reply.item_ids)
        return reply.bundle_version

    versions = await asyncio.gather(app.refresh(), *[call() for _ in range(10)])
    assert set(versions[1:]) <= {"v1", "v2"}
    new = app.ready()
    assert new is not old and new.version == "v2"
    assert new.row_of("added-before-swap") is not None and all(new.row_of(i) is None for i in removed)
    assert old.version == "v1"  # the old retriever is untouched for requests that still hold it
    assert (await call()) == "v2"


def test_demographics_mirror_the_two_tower_vocabulary(server, built) -> None:
    tower = _app(server).ready().query_tower
    assert tower is not None
    feats = common_pb2.UserFeatures(age_bucket=35, gender="F", occupation=built.model.vocab.occupations[1])
    expected = built.model.vocab.demographics([35], ["F"], [built.model.vocab.occupations[1]])[0]
    assert tower.demographics(feats).tolist() == expected.tolist()
    assert tower.context(0, common_pb2.DEVICE_TYPE_TV).tolist() == [0, 0, DEVICES.index("tv")]
    monday_9am = int(pd.Timestamp("2024-01-01 09:30", tz="UTC").timestamp())
    assert tower.context(monday_9am, 0).tolist() == [10, 1, 0]
