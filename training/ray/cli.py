"""`python -m training.ray_jobs [--model NAME] [--config.FIELD VALUE ...]` (and `recsys train`): train one
model of the table as a Ray Train job and write its artifacts (the exported arrays, its state_dict and
metrics.json with the config, per-epoch metrics and samples/s) to `--out`; `... bench ...` compares Ray
Train with the same loop in plain PyTorch and prints JSON (docs/training.md)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
import sys
from typing import Any

from training.models.registry import UnknownModel
from training.ray import bench
from training.ray.args import BenchArgs, TrainArgs, parse
from training.ray.job import RayRun, connect, fit, load_data

log = logging.getLogger("training.ray")

PROG = "python -m training.ray_jobs"


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def train(args: TrainArgs[Any]) -> int:
    import ray

    config = args.model_config()
    ray_info = connect(args.address, args.num_cpus)
    try:
        data, data_info = load_data(args.feature_repo, args.limit)
        run = fit(args.model, config, ray.put(data), args.scaling())
    finally:
        if ray_info["started_here"]:
            ray.shutdown()
    out = args.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for path in run.final.artifacts:
        shutil.copy2(path, out / path.name)
        names.append(path.name)
    run.final.discard()
    metrics = {
        "model": args.model,
        "config": dataclasses.asdict(config),
        "workers": args.workers,
        "use_gpu": args.gpu,
        "data": data_info,
        "ray": ray_info,
        "epochs": run.history,
        "samples_per_s": round(mean([h["samples_per_s"] for h in run.history]), 1),
        "timing": timing(run),
        "checkpoint": run.checkpoint,
        "artifacts": names,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "%s: %d epochs on %d workers, %.0f samples/s, fit %.1fs -> %s",
        args.model,
        len(run.history),
        args.workers,
        metrics["samples_per_s"],
        run.fit_s,
        out,
    )
    return 0


def timing(run: RayRun) -> dict[str, float]:
    """fit_s: the whole TorchTrainer.fit; train_fn_s: the trainer in the workers; startup_s: the difference."""
    final = run.metrics
    return {
        "fit_s": round(run.fit_s, 3),
        "train_fn_s": round(final.get("train_fn_s", float("nan")), 3),
        "startup_s": round(run.fit_s - final.get("train_fn_s", 0.0), 3),
        "report_s": round(final.get("report_s", float("nan")), 3),
        "prepare_model_s": round(final.get("prepare_model_s", float("nan")), 3),
    }


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args_in[:1] == ["bench"]:
            description = "Ray Train against the same loop in plain PyTorch (LocalContext); prints JSON."
            bench_args: BenchArgs[Any] = parse(BenchArgs, args_in[1:], f"{PROG} bench", description)
            return bench.run(bench_args)
        train_args: TrainArgs[Any] = parse(TrainArgs, args_in, PROG, __doc__ or "")
        return train(train_args)
    except (UnknownModel, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
