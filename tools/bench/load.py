"""`recsys bench load`: the SLO benchmark. Starts the four services as separate processes (tracing to files),
runs `recsys loadtest`'s open-loop generator at each rate, and reports per rate p50/p95/p99, achieved rate and
errors, the highest rate that kept p99 <= the limit, and where the time goes per stage (from the traces of a
run at the first rate). Prints JSON; `--plot` writes latency against rate.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.bench.recommend import machine
from tools.loadtest import run as load

USERS = [str(u) for u in range(1, 944)]


def run(
    rates: Sequence[float], duration_s: float, count: int, p99_limit_ms: float, plot: Path | None
) -> dict[str, Any]:
    from tools.stack import SERVICES, Stack, free_port

    rows: list[dict[str, Any]] = []
    breakdown: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recsys-load-") as tmp:
        traces = Path(tmp) / "traces-{service}.jsonl"
        env = {
            "OTEL_TRACES_EXPORTER": "file",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "RECSYS_TRACES_FILE": str(traces),
            "RECSYS_GATEWAY_PUSH_FEATURES": "false",
            "RECSYS_GATEWAY_EVENT_LOG_PATH": str(Path(tmp) / "events.db"),
        }
        stack = Stack(ports={s: free_port() for s in SERVICES}, env=env, log_dir=Path(tmp) / "logs")
        stack.start()
        try:
            stack.wait_serving(timeout=300)
            for i, rate in enumerate(rates):
                result = asyncio.run(load(stack.address("gateway"), rate, duration_s, USERS, count))
                rows.append({"target_rate": rate, "duration_s": duration_s, **result.summary()})
                if i == 0:  # the per-stage breakdown at the first rate, before later runs add their spans
                    from tools.bench.traces import breakdown as spans

                    time.sleep(2)  # the span processors export every 0.5 s
                    rows_ = spans(sorted(Path(tmp).glob("traces-*.jsonl")))
                    breakdown = [r for r in rows_ if "grpc.health" not in str(r["span"])]
        finally:
            stack.stop()
    ok = [r for r in rows if not r["errors"] and r["p99_ms"] <= p99_limit_ms]
    if plot is not None:
        _plot(rows, p99_limit_ms, plot)
    return {
        "benchmark": "load",
        "count": count,
        "candidates": "500 -> 200 ranked -> count",
        "tracing": "file exporter on (its cost is included)",
        "results": rows,
        "highest_rate_with_p99_under_limit": max((r["target_rate"] for r in ok), default=None),
        "p99_limit_ms": p99_limit_ms,
        "stage_breakdown_at_first_rate": breakdown,
        "machine": machine(),
    }


def _plot(rows: list[dict[str, Any]], limit: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    rates = [r["target_rate"] for r in rows]
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        ax.plot(rates, [r[key] for r in rows], marker="o", label=key.removesuffix("_ms"))
    ax.axhline(limit, color="grey", linestyle="--", label=f"{limit:g} ms")
    ax.set_xlabel("offered load (Recommend/s, open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Recommend latency against load (four processes, 2 vCPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
