"""`recsys bench ranking`: `Rank` latency and throughput on the in-process and Triton backends.

For each backend it starts the ranking service as its own process (and, for Triton, a local CPU Triton
server on the bundle's model repository), then for each candidate count and concurrency runs `requests`
calls per caller from that many concurrent async callers, after a warm-up. Prints JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import grpc

from recsys.common.v1 import common_pb2
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from tools.bench.recommend import machine, percentiles

USER = common_pb2.UserFeatures(
    user_id="196", age_bucket=45, gender="M", occupation="writer", interaction_count=39, mean_rating=3.6
)


async def _measure(address: str, candidates: int, concurrency: int, requests: int) -> dict[str, Any]:
    item_ids = [str(1 + i % 1682) for i in range(candidates)]
    request = ranking_pb2.RankRequest(user=USER, item_ids=item_ids)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        for _ in range(20):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.Rank(request, timeout=10)
        samples: list[float] = []
        errors: Counter[str] = Counter()

        async def caller() -> None:
            for _ in range(requests):
                t0 = time.perf_counter()
                try:
                    await stub.Rank(request, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                    continue
                samples.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "candidates": candidates,
        "concurrency": concurrency,
        "requests": len(samples),
        "errors": dict(errors),
        "requests_per_s": round(len(samples) / wall, 1),
        "candidates_per_s": round(len(samples) * candidates / wall),
        **(percentiles(samples) if samples else {}),
    }


def run(
    backends: Sequence[str], candidates: Sequence[int], concurrency: Sequence[int], requests: int
) -> dict[str, Any]:
    from artifacts.bundle import load_current
    from artifacts.paths import DEFAULT_VAR
    from services.common.settings import CommonSettings
    from services.ranking.scorer import RankerArtifacts
    from tools.local_triton import LocalTriton
    from tools.stack import Stack, free_port

    common = CommonSettings()
    artifacts = RankerArtifacts.from_bundle(load_current(common.bundle_dir))
    results: list[dict[str, Any]] = []
    for backend in backends:
        triton = None
        env = {"RECSYS_RANKING_BACKEND": backend}
        if backend == "triton":
            triton = LocalTriton(
                common.bundle_dir / "triton",
                models=(artifacts.triton_model,),
                log_path=DEFAULT_VAR / "logs" / "triton.log",
            ).start()
            env["RECSYS_RANKING_TRITON_URL"] = triton.grpc_url
        stack = Stack(ports={"ranking": free_port()}, env=env)
        try:
            stack.start(("ranking",))
            stack.wait_serving(timeout=180)
            for n in candidates:
                for c in concurrency:
                    row = asyncio.run(_measure(stack.address("ranking"), n, c, requests))
                    results.append({"backend": backend, **row})
        finally:
            stack.stop()
            if triton is not None:
                triton.stop()
    return {
        "benchmark": "rank",
        "bundle_version": artifacts.bundle_version,
        "model": artifacts.triton_model,
        "results": results,
        "machine": machine(),
    }
