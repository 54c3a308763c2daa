"""The whole stack as four separate processes on free ports, as `make run` starts it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tools.stack import SERVICES, Stack, free_port

from ..conftest import REPO, private_feature_repo, run_async
from ..waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(bundle, offline_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    running = Stack(
        ports={s: free_port() for s in SERVICES},
        # Feedback pushes fresh features as in `make run`, into a private copy of the Feast repository (the
        # shared online store under var/feast stays untouched). Traces go to one JSON-lines file per process;
        # the gateway serves /metrics.
        env={
            "RECSYS_FEATURE_REPO": str(private_feature_repo(tmp, offline_dir)),
            "RECSYS_GATEWAY_EVENT_LOG_PATH": str(tmp / "events.db"),
            "RECSYS_GATEWAY_PUSH_FEATURES": "true",
            "RECSYS_LOG_JSON": "true",
            "OTEL_TRACES_EXPORTER": "file",
            "RECSYS_TRACES_FILE": str(tmp / "traces-{service}.jsonl"),
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
        service_env_overrides={
            "gateway": {"OTEL_METRICS_EXPORTER": "prometheus", "RECSYS_METRICS_PORT": str(free_port())}
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
        [sys.executable, "-m", "cli.app", "--address", stack.address("gateway"), *args],
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
    args = ("--json", "recommend", "--user", "196", "--count", "5", "--diversity", "0.8")
    calibrated = json.loads(_cli(stack, *args, "--diversity-method", "calibrated").stdout)
    assert len(calibrated["items"]) == 5 and not calibrated.get("degraded_stages")
    similar = _cli(stack, "similar", "--item", "50", "--count", "3")
    assert similar.returncode == 0 and "Items similar to 50" in similar.stdout
    feedback = _cli(stack, "feedback", "--user", "196", "--item", "50", "--type", "click", "--event-id", "cli-1")
    assert feedback.returncode == 0 and "accepted 1 event(s), 0 already recorded" in feedback.stdout
    again = _cli(stack, "feedback", "--user", "196", "--item", "50", "--event-id", "cli-1")
    assert "1 already recorded" in again.stdout
    bad = _cli(stack, "recommend", "--user", "196", "--count", "0")
    assert bad.returncode == 1 and "INVALID_ARGUMENT: count must be at least 1" in bad.stderr


def test_feedback_from_the_cli_changes_the_next_recommendations(stack: Stack) -> None:
    """`recsys feedback --user U --item I --type click`, then `recsys recommend --user U` no longer shows I."""
    before = json.loads(_cli(stack, "--json", "recommend", "--user", "305", "--count", "10").stdout)
    clicked = before["items"][0]["item_id"]
    feedback = _cli(stack, "feedback", "--user", "305", "--item", clicked, "--type", "click")
    assert feedback.returncode == 0 and "accepted 1 event(s)" in feedback.stdout, feedback.stderr
    after = json.loads(_cli(stack, "--json", "recommend", "--user", "305", "--count", "10").stdout)
    assert len(after["items"]) == 10 and not after.get("degraded_stages")
    assert clicked not in {i["item_id"] for i in after["items"]}


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


def _spans(stack: Stack) -> list[dict]:
    folder = Path(stack.env["RECSYS_TRACES_FILE"]).parent
    return [json.loads(line) for path in folder.glob("traces-*.jsonl") for line in path.read_text().splitlines()]


def test_one_trace_spans_all_four_processes_and_metrics_are_exported(stack: Stack, gateway) -> None:
    reply = gateway.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=5), timeout=10)

    def whole_trace() -> tuple[dict, list[dict]]:
        spans = _spans(stack)
        root = next(
            (s for s in spans if s["name"].endswith("GatewayService/Recommend") and s["kind"] == "SERVER"
             and s["attributes"].get("recsys.request_id") == reply.request_id),
            None,
        )  # fmt: skip
        assert root is not None, "no gateway Recommend span was exported"
        trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
        assert {s["service"] for s in trace} == {"gateway", "candidate", "ranking", "rerank"}
        return root, trace

    root, trace = eventually(
        whole_trace,
        timeout=20,
        interval=0.5,
        message="the four processes export one trace",
        retry_on=(AssertionError, json.JSONDecodeError),  # a span line the exporter is still writing
    )
    by_id = {s["span_id"]: s for s in trace}
    for service, method in (("candidate", "Retrieve"), ("ranking", "Rank"), ("rerank", "Rerank")):
        server = next(s for s in trace if s["service"] == service and s["kind"] == "SERVER")
        assert server["name"].endswith(f"Service/{method}")
        client = by_id[server["parent_id"]]  # the gateway's outgoing call is the parent of the stage's span
        assert client["service"] == "gateway" and client["kind"] == "CLIENT" and client["parent_id"] == root["span_id"]
    feast = next(s for s in trace if s["name"] == "feast.read_user_features")
    assert feast["parent_id"] == root["span_id"]
    attrs = root["attributes"]
    assert attrs["recsys.candidates.count"] == 500 and attrs["recsys.candidates.embedding"] > 0
    assert attrs["recsys.degraded_stages"] == [] and attrs["recsys.items"] == 5
    assert attrs["recsys.bundle_version"] == reply.bundle_version

    port = stack.service_env_overrides["gateway"]["RECSYS_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "recsys_stage_latency" in text and 'stage="ranking"' in text
    assert "recsys_requests" in text and 'code="OK"' in text


def test_killing_a_stage_under_load_fails_no_request_and_recovers(stack: Stack) -> None:
    """Open-loop load (recsys loadtest's generator) while the ranking process is SIGKILLed and restarted: every
    request is answered (degraded while ranking is down), and answers are whole again seconds after it serves."""
    from tools.loadtest import run as load

    users = [str(u) for u in range(1, 944)]
    marks: dict[str, float] = {}

    def fault() -> None:
        time.sleep(5)  # the fault's schedule: 5 s of load before the kill
        marks["killed"] = time.perf_counter()
        stack.processes["ranking"].kill()
        stack.processes["ranking"].wait()
        stack.processes.pop("ranking")
        time.sleep(5)  # and 5 s of load with ranking down before the restart
        stack.start(("ranking",))
        stack.wait_serving(timeout=120)
        marks["serving"] = time.perf_counter()

    # The load lasts until whole answers have had 8 s to come back after the restart (at most 120 s), so a host
    # on which the restart is slow still sees the recovery.
    def recovered() -> bool:
        return "serving" in marks and time.perf_counter() > marks["serving"] + 8

    injector = threading.Thread(target=fault)
    started = time.perf_counter()
    injector.start()
    result = run_async(load(stack.address("gateway"), rate=20, duration_s=120, users=users, count=10, stop=recovered))
    injector.join()
    summary = result.summary()
    assert summary["errors"] == {} and summary["ok"] == summary["requests"], summary
    assert summary["degraded_by_stage"].get("ranking", 0) > 0, summary
    # Recovery: the last degraded answer was scheduled at most a few seconds after ranking reported SERVING.
    serving_at = marks["serving"] - started
    last_degraded = max(t for t, _, _, degraded in result.timeline if degraded)
    assert last_degraded - serving_at <= 5.0, (last_degraded, serving_at, summary)
    assert any(t > serving_at + 5 and not d for t, _, _, d in result.timeline), "no whole answers after recovery"
