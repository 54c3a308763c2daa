"""`recsys bench rerank`: `Rerank` latency, N candidates -> `count` items, per diversity method.

Starts the rerank service as its own process on the current bundle and calls it sequentially (after a
warm-up) with the ranked candidates of real users, explanations on and the graph affinity blended in when the
bundle has graph embeddings (reported as `graph`), and an item-to-item affinity per candidate blended in at
0.5. Also times the same work in-process (`core_*`), which
is what the service spends per request without the gRPC hop. Prints JSON.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from tools.bench.recommend import machine, percentiles


def _requests(item_ids: np.ndarray, user_ids: np.ndarray, candidates: int, count: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        picked = rng.choice(len(item_ids), size=candidates, replace=False)
        out.append(
            {
                "user_id": str(user_ids[rng.integers(len(user_ids))]),
                "item_ids": item_ids[picked].astype(str).tolist(),
                "scores": np.sort(rng.random(candidates))[::-1].astype(np.float32),
                "affinity": rng.normal(size=candidates).astype(np.float32),  # the candidate stage's EASE affinity
                "count": count,
                "history": item_ids[rng.choice(len(item_ids), size=20, replace=False)].astype(str).tolist(),
            }
        )
    return out


def run(candidates: int, count: int, calls: int, diversity: float, methods: Sequence[str]) -> dict[str, Any]:
    from artifacts.bundle import load_current
    from services.common.settings import CommonSettings
    from services.rerank.query import DiversityMethod, RerankQuery
    from services.rerank.reranker import Reranker
    from tools.stack import Stack, free_port

    common = CommonSettings()
    bundle = load_current(common.bundle_dir)
    reranker = Reranker.from_bundle(bundle, common.feature_repo)
    arrays = bundle.load_arrays("retrieval", keys=("item_ids", "user_ids"))
    reqs = _requests(arrays["item_ids"], arrays["user_ids"], candidates, count, calls)
    graph_weight = 0.3 if reranker.graph is not None else 0.0
    results: list[dict[str, Any]] = []

    for method in methods:  # in-process: the service's compute
        samples = []
        for i, r in enumerate([*reqs[:50], *reqs]):
            t0 = time.perf_counter()
            query = RerankQuery(
                r["item_ids"],
                r["scores"],
                count,
                affinity=r["affinity"],
                diversity=diversity,
                method=DiversityMethod(method),
                explain=True,
                history_item_ids=r["history"],
                user_id=r["user_id"],
                graph_weight=graph_weight,
                affinity_weight=0.5,
            )
            reranker.rerank(query)
            if i >= 50:
                samples.append((time.perf_counter() - t0) * 1000)
        results.append({"where": "core", "method": method, **percentiles(samples)})

    stack = Stack(ports={"rerank": free_port()})
    try:
        stack.start(("rerank",))
        stack.wait_serving(timeout=180)
        with grpc.insecure_channel(stack.address("rerank")) as channel:
            stub = rerank_pb2_grpc.RerankServiceStub(channel)
            for method in methods:
                samples = []
                for i, r in enumerate([*reqs[:50], *reqs]):
                    request = rerank_pb2.RerankRequest(
                        user_id=r["user_id"], item_ids=r["item_ids"], scores=r["scores"].tolist(), count=count,
                        diversity=diversity, explain=True, history_item_ids=r["history"],
                        diversity_method=DiversityMethod(method).proto, graph_weight=graph_weight,
                        affinity=r["affinity"].tolist(), affinity_weight=0.5,
                    )  # fmt: skip
                    t0 = time.perf_counter()
                    stub.Rerank(request, timeout=5)
                    if i >= 50:
                        samples.append((time.perf_counter() - t0) * 1000)
                results.append({"where": "grpc", "method": method, **percentiles(samples)})
    finally:
        stack.stop()
    return {
        "benchmark": "rerank",
        "bundle_version": bundle.version,
        "candidates": candidates,
        "count": count,
        "diversity": diversity,
        "explain": True,
        "graph": reranker.graph is not None,
        "graph_weight": graph_weight,
        "calls": calls,
        "results": results,
        "machine": machine(),
    }
