"""Batch recommendations: the Ray job pushes each user's precomputed list to the online store, and the gateway
serves it when the candidate stage is down. Runs on a private copy of the Feast repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.server import start_and_load
from services.common.settings import CommonSettings
from services.gateway.servicer import GatewayApp
from services.gateway.user_features import UserFeatureReader
from tools.stack import free_port

from ..conftest import REPO, private_feature_repo
from .conftest import Servers, gateway_settings

pytestmark = pytest.mark.e2e


async def test_candidate_stage_down_serves_the_users_precomputed_list(
    stage_servers: Servers, bundle, offline_dir: Path, tmp_path: Path
) -> None:
    repo = private_feature_repo(tmp_path, offline_dir)
    # Longer than the gateway's candidate count (500), so no popular items are needed to fill it.
    job = subprocess.run(  # noqa: ASYNC221 - a one-off job before the gateway starts
        [sys.executable, "-m", "training.batch_recommend", "--feature-repo", str(repo), "--k", "600"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    assert "pushed 943 users' top-600 lists" in job.stderr
    features = UserFeatureReader(repo, "gateway_user_v1").read("196")
    precomputed = list(features.batch_item_ids)
    assert len(precomputed) == 600
    # The user's k-means segment is a Feast feature now, tagged with the bundle that assigned it.
    segments = bundle.load_arrays("segments", keys=("user_ids", "user_segment"))
    expected = int(segments["user_segment"][segments["user_ids"].astype(str).tolist().index("196")])
    assert features.HasField("segment") and features.segment == expected
    assert features.segment_bundle_version == bundle.version
    assert not UserFeatureReader(repo, "gateway_user_v1").read("new-user-x").HasField("segment")

    settings = gateway_settings(stage_servers, tmp_path, candidate_address=f"127.0.0.1:{free_port()}")
    server = await start_and_load(GatewayApp(settings, CommonSettings(feature_repo=repo)))
    try:
        stub = gateway_pb2_grpc.GatewayServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        excluded = precomputed[0]
        reply = await stub.Recommend(
            gateway_pb2.RecommendRequest(user_id="196", count=10, exclude_item_ids=[excluded], diversity=0.0)
        )
        assert list(reply.degraded_stages) == [common_pb2.STAGE_CANDIDATE]
        assert len(reply.items) == 10
        assert {i.source for i in reply.items} == {common_pb2.CANDIDATE_SOURCE_BATCH}
        assert {i.item_id for i in reply.items} <= set(precomputed[1:])  # filters still apply to the list

        # A user the job has not seen gets the popular fallback, as before.
        cold = await stub.Recommend(gateway_pb2.RecommendRequest(user_id="new-user-x", count=5))
        assert {i.source for i in cold.items} == {common_pb2.CANDIDATE_SOURCE_POPULAR} and len(cold.items) == 5
    finally:
        await server.stop(0)
