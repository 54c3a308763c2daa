"""The whole stack as four separate processes on free ports, as `make run` starts it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.stack import SERVICES, Stack, free_port

from ..conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    running = Stack(
        ports={s: free_port() for s in SERVICES},
        # No pushes into the shared online store under var/feast (tests/services/test_fresh_features.py pushes
        # into a private copy).
        env={
            "RECSYS_GATEWAY_EVENT_LOG_PATH": str(tmp / "events.db"),
            "RECSYS_GATEWAY_PUSH_FEATURES": "false",
            "RECSYS_LOG_JSON": "true",
        },
        log_dir=tmp / "logs",
    )
    running.start()
    try:
        running.wait_serving(timeout=240)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[gateway_pb2_grpc.GatewayServiceStub]:
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def test_all_four_report_serving(stack: Stack) -> None:
    assert {s: stack.health(s) for s in SERVICES} == {s: health_pb2.HealthCheckResponse.SERVING for s in SERVICES}


def test_recommend_for_a_real_movielens_user(gateway) -> None:
    inter = pd.read_parquet(REPO / "var/data/feast/interactions.parquet", columns=["user_id", "item_id"])
    items = set(pd.read_parquet(REPO / "var/data/feast/items.parquet", columns=["item_id"])["item_id"])
    rated = set(inter.loc[inter["user_id"] == "196", "item_id"])
    reply = gateway.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=15, explain=True), timeout=10)
    assert len(reply.items) == 15
    ids = [i.item_id for i in reply.items]
    assert len(set(ids)) == 15 and set(ids) <= items and not set(ids) & rated
    for item in reply.items:
        scores = item.stage_scores
        assert scores.retrieval != 0 and scores.ranking != 0 and scores.rerank != 0 and item.reason
    assert not reply.degraded_stages and reply.bundle_version and reply.request_id


def test_cold_start_user_gets_popular_items_not_an_error(gateway) -> None:
    reply = gateway.Recommend(gateway_pb2.RecommendRequest(user_id="first-visit-0001", count=10), timeout=10)
    assert reply.cold_start and len(reply.items) == 10
    assert {i.source for i in reply.items} == {common_pb2.CANDIDATE_SOURCE_POPULAR}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda g: g.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda g: g.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=10**9)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda g: g.Recommend(gateway_pb2.RecommendRequest(user_id="", count=5)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda g: g.Recommend(gateway_pb2.RecommendRequest(user_id="a b", count=5)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda g: g.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id="99999", count=5)),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
def test_bad_requests_get_precise_statuses(gateway, call, code) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(gateway)
    assert info.value.code() == code  # type: ignore[attr-defined]
    assert info.value.details() and "Traceback" not in info.value.details()  # type: ignore[attr-defined]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", "--address", stack.address("gateway"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_readable_and_json_answers(stack: Stack) -> None:
    text = _cli(stack, "recommend", "--user", "196", "--count", "5")
    assert text.returncode == 0, text.stderr
    assert "Recommendations for user 196" in text.stdout and text.stdout.count("\n") >= 6
    as_json = json.loads(_cli(stack, "--json", "recommend", "--user", "196", "--count", "3").stdout)
    assert len(as_json["items"]) == 3 and as_json["items"][0]["info"]["title"]
    similar = _cli(stack, "similar", "--item", "50", "--count", "3")
    assert similar.returncode == 0 and "Items similar to 50" in similar.stdout
    feedback = _cli(stack, "feedback", "--user", "196", "--item", "50", "--type", "click", "--event-id", "cli-1")
    assert feedback.returncode == 0 and "accepted 1 event(s), 0 already recorded" in feedback.stdout
    again = _cli(stack, "feedback", "--user", "196", "--item", "50", "--event-id", "cli-1")
    assert "1 already recorded" in again.stdout
    bad = _cli(stack, "recommend", "--user", "196", "--count", "0")
    assert bad.returncode == 1 and "INVALID_ARGUMENT: count must be at least 1" in bad.stderr


def test_sigterm_drains_and_exits_cleanly(stack: Stack, tmp_path: Path) -> None:
    # A separate rerank process, so the shared stack keeps running.
    extra = Stack(ports={"rerank": free_port()}, log_dir=tmp_path)
    extra.start(("rerank",))
    extra.wait_serving(timeout=120)
    proc = extra.processes["rerank"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = extra.log_tail("rerank", 50)
    assert "shutting down" in log and "Traceback" not in log
