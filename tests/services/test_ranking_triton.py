"""The ranking stage on a real Triton server (the CPU build from the nvidia-pytriton wheel).

What this exercises: Triton's gRPC protocol, model repository layout and config.pbtxt generated from the
bundle, dynamic batching, model versions, health and statistics. What it does not: the ONNX Runtime backend
library and the GPU (the wheel has neither; a Python-based stand-in named `onnxruntime` runs the same
model.onnx on the CPU — see deploy/triton/cpu-backends/ and docs/triton.md).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc as triton_grpc

from artifacts.bundle import Bundle
from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from services.common.server import RunningServer, start_and_load
from services.gateway.servicer import GatewayApp
from services.ranking.backends import InProcessBackend
from services.ranking.scorer import RankerArtifacts
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings
from tools.local_triton import TRITON_VENV, LocalTriton
from tools.stack import free_port
from training.export import export_onnx, publish_to_triton_repository
from training.models.ranker import MlpRankerModule, RankerConfig

from ..conftest import require
from ..waiting import eventually_async
from .conftest import Servers, gateway_settings

USER = common_pb2.UserFeatures(
    user_id="196", age_bucket=45, gender="M", occupation="writer", interaction_count=39, mean_rating=3.6
)
ITEMS = [str(i) for i in range(1, 501)]


@pytest.fixture(scope="module")
def artifacts(bundle: Bundle) -> RankerArtifacts:
    return RankerArtifacts.from_bundle(bundle)


@pytest.fixture(scope="module")
def triton(artifacts: RankerArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    require((TRITON_VENV / "bin" / "python").exists(), "no CPU Triton environment; `make triton-env` builds it")
    repo = tmp_path_factory.mktemp("triton-repo")
    publish_to_triton_repository(
        repo, artifacts.triton_model, artifacts.triton_version, artifacts.onnx_path, artifacts.contract
    )
    server = LocalTriton(repo, models=(artifacts.triton_model,), log_path=repo.parent / "triton.log")
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module")
async def ranking_on_triton(triton: LocalTriton, common_settings) -> AsyncIterator[RunningServer]:
    settings = RankingSettings(port=0, backend="triton", triton_url=triton.grpc_url)
    server = await start_and_load(RankingApp(settings, common_settings))
    yield server
    await server.stop(0)


def _stub(server: RunningServer) -> ranking_pb2_grpc.RankingServiceStub:
    return ranking_pb2_grpc.RankingServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))


def test_triton_reports_ready_with_the_bundle_version(triton: LocalTriton, artifacts: RankerArtifacts) -> None:
    client = triton_grpc.InferenceServerClient(triton.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(artifacts.triton_model, str(artifacts.triton_version))
    meta = client.get_model_metadata(artifacts.triton_model)
    assert [i.name for i in meta.inputs] == ["sparse", "genres", "dense"] and meta.outputs[0].name == "score"


async def test_triton_scores_equal_in_process_scores(ranking_on_triton, channel_to) -> None:
    request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS)
    request.context.request_time.FromSeconds(1_700_000_000)
    on_triton = await _stub(ranking_on_triton).Rank(request)
    in_process = await ranking_pb2_grpc.RankingServiceStub(channel_to["ranking"]).Rank(request)
    np.testing.assert_allclose(on_triton.scores, in_process.scores, rtol=0, atol=1e-5)
    assert on_triton.bundle_version == in_process.bundle_version


async def test_dynamic_batching_merges_concurrent_requests(ranking_on_triton, triton, artifacts) -> None:
    client = triton_grpc.InferenceServerClient(triton.grpc_url)

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(artifacts.triton_model, str(artifacts.triton_version))
        s = stats.model_stats[0]
        return s.inference_stats.success.count, s.execution_count

    before = counts()
    stub = _stub(ranking_on_triton)
    request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS[:100])

    async def caller() -> None:
        for _ in range(25):
            await stub.Rank(request)

    await asyncio.gather(*(caller() for _ in range(8)))
    requests, executions = (a - b for a, b in zip(counts(), before, strict=True))
    assert requests == 200
    assert executions < requests, f"{requests} requests ran in {executions} executions: nothing was batched"


def test_a_new_model_version_is_served_after_reload(triton, artifacts, tmp_path: Path) -> None:
    # A differently initialised model with the same contract, published as the next version.
    contract = artifacts.contract
    other = MlpRankerModule(contract.cardinalities(), len(contract.genres), RankerConfig(seed=7)).eval()
    onnx = export_onnx(other, contract, tmp_path / "next.onnx")
    new_version = artifacts.triton_version + 1
    publish_to_triton_repository(triton.repository, artifacts.triton_model, new_version, onnx, contract)
    client = triton_grpc.InferenceServerClient(triton.grpc_url)
    client.load_model(artifacts.triton_model)  # explicit mode: reload picks up the new version directory
    assert client.is_model_ready(artifacts.triton_model, str(new_version))
    assert client.is_model_ready(artifacts.triton_model, str(artifacts.triton_version)), "the old one stays"

    batch_rows = 7
    sparse = np.ones((batch_rows, 7), np.int64)
    genres = np.zeros((batch_rows, len(contract.genres)), np.float32)
    dense = np.random.default_rng(0).normal(size=(batch_rows, 6)).astype(np.float32)
    inputs = [triton_grpc.InferInput("sparse", list(sparse.shape), "INT64"),
              triton_grpc.InferInput("genres", list(genres.shape), "FP32"),
              triton_grpc.InferInput("dense", list(dense.shape), "FP32")]  # fmt: skip
    for tensor, array in zip(inputs, (sparse, genres, dense), strict=True):
        tensor.set_data_from_numpy(array)
    new = client.infer(artifacts.triton_model, inputs, model_version=str(new_version)).as_numpy("score")[:, 0]
    old = client.infer(artifacts.triton_model, inputs, model_version=str(artifacts.triton_version)).as_numpy("score")
    expected_new = InProcessBackend(onnx, contract).session.run(
        ["score"], {"sparse": sparse, "genres": genres, "dense": dense}
    )[0][:, 0]
    np.testing.assert_allclose(new, expected_new, atol=1e-6)
    assert not np.allclose(new, old[:, 0]), "the versions are different models"
    shutil.rmtree(triton.repository / artifacts.triton_model / str(new_version))
    client.load_model(artifacts.triton_model)


async def test_triton_down_fails_fast_and_the_gateway_degrades(
    artifacts, common_settings, stage_servers: Servers, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish_to_triton_repository(
        repo, artifacts.triton_model, artifacts.triton_version, artifacts.onnx_path, artifacts.contract
    )
    doomed = LocalTriton(repo, models=(artifacts.triton_model,), log_path=tmp_path / "triton.log").start()
    ranking = await start_and_load(
        RankingApp(RankingSettings(port=0, backend="triton", triton_url=doomed.grpc_url), common_settings)
    )
    gateway = None
    try:
        stub = _stub(ranking)
        request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS[:50])
        assert len((await stub.Rank(request)).scores) == 50
        doomed.stop()
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Rank(request)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "Triton" in info.value.details()
        assert time.perf_counter() - started < 1.0, "fails fast, not at the deadline"

        settings = gateway_settings(stage_servers, tmp_path)
        settings = settings.model_copy(update={"ranking_address": f"127.0.0.1:{ranking.port}"})
        gateway = await start_and_load(GatewayApp(settings, common_settings))
        gw = gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}"))
        reply = await gw.Recommend(
            gateway_pb2.RecommendRequest(user_id="196", count=10, diversity=0.0, graph_weight=0.0, affinity_weight=0.0)
        )
        assert list(reply.degraded_stages) == [common_pb2.STAGE_RANKING] and len(reply.items) == 10
        retrieval = [i.stage_scores.retrieval for i in reply.items]
        assert retrieval == sorted(retrieval, reverse=True), "answered in retrieval order"
    finally:
        doomed.stop()
        if gateway is not None:
            await gateway.stop(0)
        await ranking.stop(0)


async def test_the_stage_starts_with_triton_down_and_ranks_once_it_is_up(artifacts, common_settings, tmp_path) -> None:
    """Start-up (readiness check and warm-up) with no Triton at the address: the stage still comes up, Rank is
    UNAVAILABLE; once a Triton serves there, Rank answers without a restart of the stage."""
    port = free_port()
    settings = RankingSettings(port=0, backend="triton", triton_url=f"127.0.0.1:{port}")
    ranking = await asyncio.wait_for(start_and_load(RankingApp(settings, common_settings)), 120)  # never hangs
    late = None
    try:
        stub = _stub(ranking)
        request = ranking_pb2.RankRequest(user=USER, item_ids=ITEMS[:20])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Rank(request)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "Triton" in info.value.details()
        require((TRITON_VENV / "bin" / "python").exists(), "no CPU Triton environment; `make triton-env` builds it")
        repo = tmp_path / "repo"
        publish_to_triton_repository(
            repo, artifacts.triton_model, artifacts.triton_version, artifacts.onnx_path, artifacts.contract
        )
        late = LocalTriton(repo, models=(artifacts.triton_model,), grpc_port=port, log_path=tmp_path / "t.log")
        late.start()
        reply = await eventually_async(
            lambda: stub.Rank(request, timeout=10),
            timeout=30,
            interval=0.5,
            message="the client reconnects to the late Triton with gRPC's backoff",
            retry_on=lambda exc: isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE,
        )
        assert len(reply.scores) == 20
    finally:
        if late is not None:
            late.stop()
        await ranking.stop(0)
