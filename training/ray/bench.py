"""`python -m training.ray_jobs bench`: a model's trainer as Ray Train runs against the same loop in plain
PyTorch (LocalContext, in this process), on the same data and epochs; prints JSON (docs/training.md)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.data.interactions import Interactions
from training.loop import LocalContext
from training.models.registry import ModelSpec, lookup
from training.ray.args import BenchArgs
from training.ray.job import DEFAULT_POLL_INTERVAL_S, POLL_INTERVAL_ENV, RayRun, Scaling, connect, fit, load_data

log = logging.getLogger("training.ray")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


@dataclass
class _TimedLocalContext(LocalContext):
    """LocalContext that also times each epoch like RayTrainContext: from prepare_model to report, and from
    one report to the next."""

    epoch_s: list[float] = field(default_factory=list)
    _last: float = 0.0

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self._last = time.perf_counter()
        return model

    def report(self, metrics: dict[str, float], model: nn.Module | None = None) -> None:
        now = time.perf_counter()
        self.epoch_s.append(now - self._last)
        self._last = now
        super().report(metrics, model)


def _rates(rates: list[float], n: int, loop_s: float) -> dict[str, Any]:
    return {
        "loop_samples_per_s": round(n * len(rates) / loop_s, 1),
        "samples_per_s": round(_mean(rates), 1),
        "samples_per_s_after_first": round(_mean(rates[1:]), 1),
        "epochs": [round(r, 1) for r in rates],
    }


def _plain(spec: ModelSpec, config: Any, data: Interactions, threads: int) -> dict[str, Any]:
    """The same trainer in this process with LocalContext and `threads` torch threads."""
    assert spec.trainer is not None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ctx = _TimedLocalContext()
        started = time.perf_counter()
        spec.trainer(*spec.inputs(data, config), config, ctx)
        loop_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    return {
        "runner": "plain",
        "torch_threads": threads,
        "train_fn_s": round(loop_s, 3),
        "epochs_s": round(sum(ctx.epoch_s), 3),
        "first_epoch_s": round(ctx.epoch_s[0], 3),
        "steady_epochs_s": round(sum(ctx.epoch_s[1:]), 3),
        **_rates([h["samples_per_s"] for h in ctx.history], len(data), loop_s),
    }


def _ray_row(run: RayRun, workers: int, n: int) -> dict[str, Any]:
    loop_s = run.metrics.get("train_fn_s", float("nan"))
    return {
        "runner": "ray",
        "workers": workers,
        "torch_threads": int(run.metrics.get("torch_threads", 0)),
        "fit_s": round(run.fit_s, 3),
        "train_fn_s": round(loop_s, 3),
        "startup_s": round(run.fit_s - loop_s, 3),
        "epochs_s": round(sum(h["epoch_s"] for h in run.history), 3),
        "first_epoch_s": round(run.history[0]["epoch_s"], 3),
        "steady_epochs_s": round(sum(h["epoch_s"] for h in run.history[1:]), 3),
        "report_s": round(run.metrics.get("report_s", float("nan")), 3),
        "prepare_model_s": round(run.metrics.get("prepare_model_s", float("nan")), 3),
        **_rates([h["samples_per_s"] for h in run.history], n, loop_s),
    }


def _runs(args: BenchArgs[Any], spec: ModelSpec, config: Any, data: Interactions) -> list[dict[str, Any]]:
    import ray

    data_ref = ray.put(data)
    storage = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    # One untimed epoch first: this process pays its one-time costs (lazy imports on first use of the
    # optimizer, allocator warm-up) outside the timed plain runs. A Ray worker is a fresh process: it takes
    # its optimiser step before its timer starts (warm_up_optimizer); the rest it pays in epoch 1.
    _plain(spec, dataclasses.replace(config, epochs=1), data, 1)
    results: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for threads in args.plain_threads:
            row = _plain(spec, config, data, threads)
            results.append({"repeat": repeat, **row})
            log.info("plain, %d threads: %.1fs, %.0f samples/s", threads, row["train_fn_s"], row["samples_per_s"])
        for workers in args.workers:
            scaling = Scaling(workers, storage=storage, report_every=args.report_every)
            run = fit(spec.name, config, data_ref, scaling, f"bench-{repeat}-{workers}w-every{args.report_every}")
            row = _ray_row(run, workers, len(data))
            results.append({"repeat": repeat, **row})
            run.final.discard()
            log.info("ray, %d workers: fit %.1fs (loop %.1fs), %.0f samples/s", workers, run.fit_s,
                     row["train_fn_s"], row["samples_per_s"])  # fmt: skip
    shutil.rmtree(storage, ignore_errors=True)
    return results


def run(args: BenchArgs[Any]) -> int:
    import ray

    spec = lookup(args.model)
    config = args.model_config()
    ray_info = connect(args.address, args.num_cpus)
    try:
        data, data_info = load_data(args.feature_repo, args.limit)
        results = _runs(args, spec, config, data)
    finally:
        if ray_info["started_here"]:
            ray.shutdown()
    report = {
        "benchmark": "train",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "model": args.model,
        "config": dataclasses.asdict(config),
        "report_every": args.report_every,
        "poll_interval_s": float(os.environ.get(POLL_INTERVAL_ENV, DEFAULT_POLL_INTERVAL_S)),
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.is_available(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "data": data_info,
        "ray": ray_info,
        "results": results,
        "summary": summary(results),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    return 0


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


_PLAIN_KEYS = ("train_fn_s", "epochs_s", "first_epoch_s", "steady_epochs_s", "loop_samples_per_s", "samples_per_s")
_RAY_KEYS = ("fit_s", "train_fn_s", "startup_s", "epochs_s", "first_epoch_s", "steady_epochs_s", "report_s",
             "loop_samples_per_s", "samples_per_s")  # fmt: skip


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per runner: median loop time and throughput over repeats; Ray's loop time against each plain run's."""
    plain = {
        t: [r for r in results if r["runner"] == "plain" and r["torch_threads"] == t]
        for t in {r["torch_threads"] for r in results if r["runner"] == "plain"}
    }
    out: dict[str, Any] = {}
    for threads, rows in sorted(plain.items()):
        out[f"plain_{threads}t"] = {key: _median(rows, key) for key in _PLAIN_KEYS}
    for workers in sorted({r["workers"] for r in results if r["runner"] == "ray"}):
        rows = [r for r in results if r["runner"] == "ray" and r["workers"] == workers]
        entry: dict[str, Any] = {key: _median(rows, key) for key in _RAY_KEYS}
        for threads in sorted(plain):
            base = out[f"plain_{threads}t"]
            entry[f"steady_epochs_vs_plain_{threads}t"] = round(entry["steady_epochs_s"] / base["steady_epochs_s"], 3)
            entry[f"epochs_vs_plain_{threads}t"] = round(entry["epochs_s"] / base["epochs_s"], 3)
            entry[f"train_fn_vs_plain_{threads}t"] = round(entry["train_fn_s"] / base["train_fn_s"], 3)
            entry[f"fit_vs_plain_{threads}t"] = round(entry["fit_s"] / base["train_fn_s"], 3)
        out[f"ray_{workers}w"] = entry
    return out
