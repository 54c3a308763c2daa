"""`recsys loadtest`: an open-loop load generator for the gateway's Recommend.

Requests are fired on a fixed schedule (`--rate` per second, Poisson arrivals) whether or not earlier ones
have finished, so a slow server cannot slow the load down and hide its own latency (no coordinated omission):
each latency is measured from the request's scheduled time. Reports p50/p95/p99, the achieved rate, errors by
status code and how many answers were degraded (by stage). `--json` prints the figures for scripts. Progress
(requests answered and sent) goes to stderr when it is a terminal, unless TQDM_DISABLE is set (as --json does).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from training.progress import progress


@dataclass
class LoadResult:
    scheduled: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    degraded: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, float, bool, bool]] = field(default_factory=list)  # (t, ms, ok, degraded)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        a = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        ok = len(self.latencies_ms)
        return {
            "requests": self.scheduled,
            "ok": ok,
            "errors": dict(self.errors),
            "degraded_answers": sum(1 for *_, d in self.timeline if d),
            "degraded_by_stage": dict(self.degraded),
            "achieved_rate": round(ok / self.wall_s, 1) if self.wall_s else 0.0,
            "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2),
        }


async def run(
    address: str,
    rate: float,
    duration_s: float,
    users: Sequence[str],
    count: int = 20,
    *,
    timeout_s: float = 2.0,
    max_in_flight: int = 1000,
    seed: int = 0,
    stop: Callable[[], bool] | None = None,
    show_progress: bool = True,
) -> LoadResult:
    """Fires Recommend on a Poisson schedule for `duration_s`; `stop`, when given, ends the schedule early as
    soon as it returns True (a fault test runs until its stage has recovered, however long a restart takes).
    `show_progress`: a bar of the requests answered on stderr (when it is a terminal and TQDM_DISABLE unset)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(rate * duration_s))
    offsets = np.cumsum(rng.exponential(1.0 / rate, n))
    offsets = offsets[offsets < duration_s]
    picks = rng.integers(0, len(users), len(offsets))
    result = LoadResult()
    in_flight = asyncio.Semaphore(max_in_flight)
    with progress(total=len(offsets), desc=f"loadtest {rate:g}/s", unit="req", shown=show_progress) as bar:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            await stub.Recommend(gateway_pb2.RecommendRequest(user_id=users[0], count=count), timeout=10)  # warm
            start = time.perf_counter()

            async def one(at: float, user: str) -> None:
                async with in_flight:
                    ok, degraded = False, False
                    try:
                        reply = await stub.Recommend(
                            gateway_pb2.RecommendRequest(user_id=user, count=count), timeout=timeout_s
                        )
                        ok = True
                        for stage in reply.degraded_stages:
                            result.degraded[common_pb2.Stage.Name(stage).removeprefix("STAGE_").lower()] += 1
                        degraded = bool(reply.degraded_stages)
                    except grpc.aio.AioRpcError as exc:
                        result.errors[exc.code().name] += 1
                    ms = (time.perf_counter() - start - at) * 1000  # from the scheduled time
                    if ok:
                        result.latencies_ms.append(ms)
                    result.timeline.append((at, ms, ok, degraded))
                    bar.update()  # answered (or failed)

            tasks = []
            for at, u in zip(offsets.tolist(), picks.tolist(), strict=True):
                if stop is not None and stop():
                    break
                delay = at - (time.perf_counter() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(at, users[u])))
                bar.set_postfix_str(f"sent {len(tasks)}, errors {result.errors.total()}", refresh=False)
            await asyncio.gather(*tasks)
            result.scheduled = len(tasks)
            result.wall_s = time.perf_counter() - start
    return result


def main(argv: list[str]) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="recsys loadtest", description=__doc__)
    parser.add_argument("--address", default=os.environ.get("RECSYS_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--count", type=int, default=20, help="items per Recommend")
    parser.add_argument("--users", type=int, default=943, help="user ids 1..N (MovieLens)")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline per request, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    users = [str(u) for u in range(1, args.users + 1)]
    load = run(
        args.address, args.rate, args.duration, users, args.count, timeout_s=args.timeout, show_progress=not args.json
    )
    result = asyncio.run(load)
    summary = {"target_rate": args.rate, "duration_s": args.duration, **result.summary()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['ok']}/{summary['requests']} ok at {summary['achieved_rate']}/s (target {args.rate}/s): "
            f"p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms; "
            f"errors {summary['errors'] or 'none'}; degraded {summary['degraded_answers']}"
        )
    return 0 if not summary["errors"] else 1
