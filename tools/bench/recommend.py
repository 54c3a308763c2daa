"""`recsys bench recommend`: sequential Recommend calls against a running gateway.

Reports client-side latency (p50/p90/p99/max, ms) over N calls for users drawn round-robin from a list,
after a warm-up, plus the machine it ran on. Sequential calls measure latency, not throughput.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version()}


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def run(address: str, calls: int, count: int, users: Sequence[str], warmup: int = 50) -> dict[str, Any]:
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        requests = [gateway_pb2.RecommendRequest(user_id=u, count=count, explain=True) for u in users]
        for i in range(warmup):
            stub.Recommend(requests[i % len(requests)], timeout=10)
        samples, degraded = [], 0
        started = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter()
            reply = stub.Recommend(requests[i % len(requests)], timeout=10)
            samples.append((time.perf_counter() - t0) * 1000)
            degraded += bool(reply.degraded_stages)
        wall = time.perf_counter() - started
    return {
        "benchmark": "recommend_sequential",
        "calls": calls,
        "count": count,
        "users": len(users),
        "degraded_answers": degraded,
        "requests_per_s": round(calls / wall, 1),
        **percentiles(samples),
        "machine": machine(),
    }
