"""Training as a Ray workload: `python -m training.ray_jobs --model bpr_mf [--epochs N] [--workers N] ...`.

Each model trains as a Ray Train `TorchTrainer` (one process per worker, DDP over gloo on CPU); the model's own
`train_<model>(..., config, ctx)` loop runs unchanged inside every worker, with a `RayTrainContext` as its
`TrainContext` (training/loop.py). The data comes from the Feast offline store through Ray Data
(training/data/feast_dataset.py). Artifacts (the model's exported arrays, its state_dict and metrics.json with
per-epoch metrics and samples/s) are written to `--out`.

Without `--address` and RAY_ADDRESS a local Ray is started (dashboard on); otherwise the job connects to that
cluster, e.g. when submitted with

    ray job submit --working-dir . -- python -m training.ray_jobs --model bpr_mf --feature-repo "$PWD/features" \\
        --out "$PWD/var/artifacts/bpr_mf" --storage-path "$PWD/var/ray_results"

`.gitignore` (which Ray honours) keeps .venv/ and var/ out of the uploaded working dir; RUNTIME_ENV_EXCLUDES
says the same for `ray://` connections. `python -m training.ray_jobs bench ...` compares Ray Train with the
same loop in plain PyTorch (LocalContext) and prints JSON (docs/training.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artifacts.paths import DEFAULT_VAR, REPO_ROOT
from services.common.settings import CommonSettings
from training.data.interactions import Interactions
from training.loop import LocalContext, unwrap

log = logging.getLogger("training.ray_jobs")

DEFAULT_STORAGE = DEFAULT_VAR / "ray_results"
DEFAULT_OUT = DEFAULT_VAR / "artifacts"
#: Kept out of the working dir uploaded for `ray://` connections (and by the e2e test's job submission).
#: `ray job submit --working-dir .` applies .gitignore, which lists .venv/ and var/ already.
RUNTIME_ENV_EXCLUDES = [".venv", "var", ".git", "**/__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"]
ARTIFACTS = "artifacts"  # folder of the final checkpoint holding what `export` wrote
STATE_DICT = "model.pt"
HISTORY = "history.json"
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
DEFAULT_POLL_INTERVAL_S = 0.2


# --- the registry ----------------------------------------------------------------------------------------


def index_arrays(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of trainers taking (users, items, n_users, n_items, config, ctx), like train_bpr."""
    return (data.user_idx, data.item_idx, data.n_users, data.n_items)


def whole(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of trainers taking (data: Interactions, config, ctx), like train_two_tower."""
    return (data,)


def ranking_examples(data: Interactions, config: Any) -> tuple[Any, ...]:
    """Inputs of the rankers' trainers (batch, targets, cardinalities, config, ctx): every interaction as a
    positive with random negatives (config.sampling; no retriever, so no hard negatives), or the centred
    ratings for objective="rating". Built on each worker from the same seed, hence the same on all."""
    from training.models.ranker import NegativeSampling, build_ranker_features, ranker_examples, rating_examples

    features = build_ranker_features(data)
    seed = int(getattr(config, "seed", 0))
    sampling = getattr(config, "sampling", NegativeSampling())
    if getattr(config, "objective", "implicit") == "rating":
        batch, targets = rating_examples(features, data, sampling.context_dropout, seed)
    else:
        batch, targets = ranker_examples(features, data, None, sampling, seed)
    return (batch, targets, features.contract.cardinalities())


def export_arrays(model: nn.Module, data: Interactions, out: Path) -> list[str]:
    """Saves what `model.export()` returns: (user vectors, item vectors) or a dict of arrays, as
    embeddings.npz with the id vocabularies. Models without `export` are saved as their state_dict only."""
    exporter = getattr(model, "export", None)
    if exporter is None:
        return []
    exported = exporter()
    if isinstance(exported, dict):
        arrays = {k: np.asarray(v) for k, v in exported.items()}
    else:
        user_vectors, item_vectors = exported
        arrays = {"user_vectors": np.asarray(user_vectors), "item_vectors": np.asarray(item_vectors)}
    arrays["user_ids"] = np.asarray(data.user_ids, dtype=str)
    arrays["item_ids"] = np.asarray(data.item_ids, dtype=str)
    np.savez(out / "embeddings.npz", **arrays)  # type: ignore[arg-type]
    return ["embeddings.npz"]


def export_two_tower(model: nn.Module, data: Interactions, out: Path) -> list[str]:
    """Item-tower vectors of the catalogue and query vectors of every user (latest history, no context)."""
    two_tower = importlib.import_module("training.models.two_tower")  # resolved at run time, like the registry
    np.savez(
        out / "embeddings.npz",
        user_ids=np.asarray(data.user_ids, dtype=str),
        item_ids=np.asarray(data.item_ids, dtype=str),
        user_vectors=two_tower.user_vectors(model, data),
        item_vectors=two_tower.item_embeddings(model),
    )
    return ["embeddings.npz"]


@dataclass(frozen=True)
class ModelSpec:
    """How to train one model on Ray: `module.trainer(*inputs(data), config, ctx)` with `module.config()` as
    the config, then `export(model, data, dir)` writes its artifacts. Names are imported lazily, so a model
    module being edited never breaks the others."""

    module: str
    trainer: str
    config: str
    inputs: Callable[[Interactions, Any], tuple[Any, ...]] = index_arrays
    export: Callable[[nn.Module, Interactions, Path], list[str]] = export_arrays

    def load(self) -> tuple[Callable[..., nn.Module], type]:
        mod = importlib.import_module(self.module)
        return getattr(mod, self.trainer), getattr(mod, self.config)


#: One line per model. A trainer follows `train_<model>(*inputs, config, ctx)`; `inputs` builds its leading
#: arguments from the Interactions (index_arrays, whole, ranking_examples), `export` writes its artifacts.
MODELS: dict[str, ModelSpec] = {
    "bpr_mf": ModelSpec("training.models.mf", "train_bpr", "MfConfig"),
    "two_tower": ModelSpec("training.models.two_tower", "train_two_tower", "TwoTowerConfig", whole, export_two_tower),
    "lightgcn": ModelSpec("training.models.lightgcn", "train_lightgcn", "LightGcnConfig", whole),
    "ncf": ModelSpec("training.models.ncf", "train_ncf", "NcfConfig", whole),
    "mult_vae": ModelSpec("training.models.autoencoder", "train_mult_vae", "MultVaeConfig", whole),
    "sequence": ModelSpec("training.models.sequence", "train_sequence", "SequenceConfig", whole),
    "mlp_ranker": ModelSpec("training.models.ranker", "train_ranker", "RankerConfig", ranking_examples),
    "dlrm": ModelSpec("training.models.dlrm", "train_dlrm", "DlrmConfig", ranking_examples),
    "wide_deep": ModelSpec("training.models.wide_deep", "train_wide_deep", "WideDeepConfig", ranking_examples),
}


def build_config(spec: ModelSpec, epochs: int | None, overrides: list[str]) -> Any:
    """The model's default config with `--epochs` and `--set key=value` applied (typed like the defaults)."""
    _, config_cls = spec.load()
    config = config_cls()
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected key=value with key one of {sorted(fields)}")
        current = getattr(config, key)
        if isinstance(current, bool):
            changes[key] = raw.lower() in {"1", "true", "yes", "on"}
        elif isinstance(current, (int, float, str)):
            changes[key] = type(current)(raw)
        else:
            changes[key] = json.loads(raw)
    return dataclasses.replace(config, **changes)


# --- inside a Ray Train worker ---------------------------------------------------------------------------


class RayTrainContext:
    """training/loop.py's TrainContext for a Ray Train worker.

    prepare_model: `ray.train.torch.prepare_model` (DistributedDataParallel when world_size > 1).
    shard: this worker's contiguous slice of one seeded permutation; every worker draws the same permutation
    from its identically seeded generator. The permutation is padded by wrapping around to a multiple of the
    world size, so all workers run the same number of steps (unequal step counts would hang DDP).
    report: the loss is averaged and samples/s summed over workers (the run's throughput); rank 0 attaches a
    checkpoint with the model's state_dict, the other ranks report the same metrics without one. With
    `report_every` > 1 only every n-th epoch (and the last) goes to Ray Train; every epoch is still logged and
    kept in the history. All ranks follow the same rule, so they call ray.train.report equally often.
    """

    def __init__(self, run: str, epochs: int | None = None, report_every: int = 1) -> None:
        import ray.train

        context = ray.train.get_context()
        self.world_size: int = context.get_world_size()
        self.rank: int = context.get_world_rank()
        self.run = run
        self.epochs = epochs
        self.report_every = max(report_every, 1)
        self.report_s = 0.0  # time spent in ray.train.report (checkpoint upload, waiting for the controller)
        self.log_s = 0.0
        self.history: list[dict[str, float]] = []
        self.prepare_s = 0.0
        self._last = time.perf_counter()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        started = time.perf_counter()
        prepared = ray.train.torch.prepare_model(model)
        self._last = time.perf_counter()
        self.prepare_s = self._last - started
        return prepared

    def shard(self, n: int, rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(n)
        per_worker = -(-n // self.world_size)
        perm = np.resize(perm, per_worker * self.world_size)  # wraps around when n is not a multiple
        return perm[self.rank * per_worker : (self.rank + 1) * per_worker]

    def _all_workers(self, metrics: dict[str, float]) -> dict[str, float]:
        now = time.perf_counter()
        out = {k: float(v) for k, v in metrics.items()}
        out["epoch_s"] = now - self._last
        self._last = now
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            keys = [k for k in ("loss", "samples_per_s") if k in out]
            values = torch.tensor([out[k] for k in keys] + [out["epoch_s"]], dtype=torch.float64)
            torch.distributed.all_reduce(values)
            for key, total in zip(keys, values[:-1].tolist(), strict=True):
                if key == "samples_per_s":
                    out["worker_samples_per_s"] = out[key]
                    out[key] = total
                else:
                    out[key] = total / self.world_size
        out["workers"] = float(self.world_size)
        return out

    def report(self, metrics: dict[str, float], model: nn.Module | None = None) -> None:
        out = self._all_workers(metrics)
        self.history.append(out)
        if self.rank == 0:
            started = time.perf_counter()
            self._log(out)
            self.log_s += time.perf_counter() - started
        epoch = int(out.get("epoch", len(self.history)))
        if epoch % self.report_every and epoch != self.epochs:
            return
        started = time.perf_counter()
        self._report(out, model if self.rank == 0 else None)
        self.report_s += time.perf_counter() - started

    def _report(self, out: dict[str, float], model: nn.Module | None) -> None:
        import ray.train

        if model is None:
            ray.train.report(out)
            return
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            torch.save(unwrap(model).state_dict(), Path(tmp) / STATE_DICT)
            ray.train.report(out, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def _log(self, out: dict[str, float]) -> None:
        total = f"/{self.epochs}" if self.epochs else ""
        log.info(  # one progress line per epoch, in the driver's output and the job's logs
            f"[{self.run}] epoch {int(out.get('epoch', len(self.history)))}{total}"
            f"  loss {out.get('loss', float('nan')):.4f}"
            f"  {out.get('samples_per_s', 0.0):,.0f} samples/s ({self.world_size} workers)"
            f"  {out['epoch_s']:.2f}s"
        )

    def finish(self, spec: ModelSpec, model: nn.Module, data: Interactions, extra: dict[str, float]) -> None:
        """The last report of the run: rank 0's checkpoint holds the exported artifacts, the final state_dict
        and the per-epoch history, which the driver copies to --out."""
        import ray.train

        metrics = {
            "final": 1.0,
            "prepare_model_s": self.prepare_s,
            "report_s": self.report_s,
            "log_s": self.log_s,
            **extra,
        }
        if self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="final-") as tmp:
            root = Path(tmp)
            (root / ARTIFACTS).mkdir()
            inner = unwrap(model)
            names = spec.export(inner, data, root / ARTIFACTS)
            torch.save(inner.state_dict(), root / ARTIFACTS / STATE_DICT)
            (root / HISTORY).write_text(json.dumps({"epochs": self.history, "artifacts": [*names, STATE_DICT]}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _warm_up_optimizer() -> None:
    """One optimiser step on a throw-away parameter. A fresh process pays ~1.6 s for its first one (torch
    imports torch._dynamo lazily there); paid here, it counts as the worker's start-up rather than as the
    first epoch, as in a long-lived process (and the benchmark's plain runs, which warm up the same way)."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param])
    param.sum().backward()
    opt.step()


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """The TorchTrainer's loop: fetch the broadcast data, run the registered trainer, report the artifacts."""
    import ray

    spec = MODELS[cfg["model"]]
    trainer, _ = spec.load()
    _warm_up_optimizer()
    started = time.perf_counter()
    data: Interactions = ray.get(cfg["data"])
    fetched = time.perf_counter()
    ctx = RayTrainContext(cfg["model"], getattr(cfg["config"], "epochs", None), cfg.get("report_every", 1))
    model = trainer(*spec.inputs(data, cfg["config"]), cfg["config"], ctx)
    trained = time.perf_counter()
    ctx.finish(
        spec,
        model,
        data,
        {"data_fetch_s": fetched - started, "train_fn_s": trained - fetched, "torch_threads": torch.get_num_threads()},
    )


# --- the driver ------------------------------------------------------------------------------------------


@dataclass
class RayRun:
    """What one TorchTrainer run produced, as seen by the driver."""

    history: list[dict[str, float]]
    artifacts: list[str]
    checkpoint: str
    fit_s: float
    final: dict[str, float] = field(default_factory=dict)


def connect(address: str | None, num_cpus: int) -> dict[str, Any]:
    """Connects to `address` / RAY_ADDRESS, or starts a local Ray with `num_cpus` CPUs and the dashboard."""
    import ray

    started = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        info = None
    elif address is None:
        info = ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
    elif address.startswith("ray://"):
        # A remote client: the cluster needs this code, sent as the working dir (without .venv, var, .git).
        runtime_env = {"working_dir": str(REPO_ROOT), "excludes": RUNTIME_ENV_EXCLUDES}
        info = ray.init(address=address, runtime_env=runtime_env)
    else:
        info = ray.init(address=address)  # "auto", host:port, or the job's own cluster under `ray job submit`
    dashboard = getattr(info, "dashboard_url", None) if info is not None else None
    if dashboard:
        log.info("Ray dashboard: http://%s", dashboard)
    return {
        "address": address or "local",
        "started_here": info is not None and address is None,  # ours to shut down
        "dashboard_url": dashboard or "",
        "ray_version": ray.__version__,
        "init_s": round(time.perf_counter() - started, 3),
    }


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it (for metrics and benchmark JSON)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_data(feature_repo: Path, limit: int | None = None) -> tuple[Interactions, dict[str, Any]]:
    """Feast offline store -> Ray Data Dataset -> the Interactions the trainers take."""
    from training.data.feast_dataset import dataset_to_interactions, load_training_dataset

    started = time.perf_counter()
    ds = load_training_dataset(feature_repo, limit)
    data = dataset_to_interactions(ds)
    info = {
        "source": "feast",
        "feature_repo": _shown(feature_repo),
        "interactions": len(data),
        "users": data.n_users,
        "items": data.n_items,
        "load_s": round(time.perf_counter() - started, 3),
    }
    log.info("data: %d interactions, %d users, %d items", len(data), data.n_users, data.n_items)
    return data, info


def fit(
    model: str,
    config: Any,
    data_ref: Any,
    workers: int,
    use_gpu: bool,
    storage: Path,
    keep_checkpoints: int,
    name: str | None = None,
    report_every: int = 1,
) -> RayRun:
    """Runs one TorchTrainer over the broadcast data and reads the final checkpoint back."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage.mkdir(parents=True, exist_ok=True)
    # Ray Train's controller collects reports when it polls the workers (every 2 s by default) and each worker
    # queues at most one, so an epoch shorter than the poll interval would wait for it at every report.
    os.environ.setdefault(POLL_INTERVAL_ENV, str(DEFAULT_POLL_INTERVAL_S))  # propagated to the controller
    name = name or f"{model}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{workers}w"
    trainer = TorchTrainer(
        train_loop_per_worker,
        # The data travels as one object-store reference rather than Ray Data shards: every trainer reads the
        # whole interaction table (each epoch reshuffles through the shared seeded permutation, negatives and
        # vocabularies span all users and items), the vocabularies must be identical on every rank for DDP's
        # embedding tables to line up, and it is small (MovieLens-100K: ~3 MB) and read zero-copy on a node.
        train_loop_config={"model": model, "config": config, "data": data_ref, "report_every": report_every},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
        ),
    )
    started = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - started
    if result.checkpoint is None:
        raise RuntimeError(f"run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        saved = json.loads((Path(ckpt) / HISTORY).read_text())
        staged = Path(tempfile.mkdtemp(prefix="ray-artifacts-"))
        shutil.copytree(Path(ckpt) / ARTIFACTS, staged, dirs_exist_ok=True)
    final = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    return RayRun(
        history=saved["epochs"],
        artifacts=[str(staged / n) for n in saved["artifacts"]],
        checkpoint=result.checkpoint.path,
        fit_s=fit_s,
        final=final,
    )


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def train(args: argparse.Namespace) -> int:
    import ray

    spec = MODELS[args.model]
    config = build_config(spec, args.epochs, args.set)
    ray_info = connect(args.address, args.num_cpus)
    try:
        data, data_info = load_data(args.feature_repo, args.limit)
        data_ref = ray.put(data)
        run = fit(
            args.model,
            config,
            data_ref,
            args.workers,
            args.gpu,
            args.storage_path,
            args.keep_checkpoints,
            report_every=args.report_every,
        )
    finally:
        if ray_info["started_here"]:
            ray.shutdown()
    out: Path = args.out / args.model if args.out == DEFAULT_OUT else args.out
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for path in map(Path, run.artifacts):
        shutil.copy2(path, out / path.name)
        names.append(path.name)
    shutil.rmtree(Path(run.artifacts[0]).parent, ignore_errors=True)
    rates = [h["samples_per_s"] for h in run.history]
    metrics = {
        "model": args.model,
        "config": dataclasses.asdict(config),
        "workers": args.workers,
        "use_gpu": args.gpu,
        "data": data_info,
        "ray": ray_info,
        "epochs": run.history,
        "samples_per_s": round(_mean(rates), 1),
        "timing": {
            "fit_s": round(run.fit_s, 3),
            "train_fn_s": round(run.final.get("train_fn_s", float("nan")), 3),
            "startup_s": round(run.fit_s - run.final.get("train_fn_s", 0.0), 3),
            "report_s": round(run.final.get("report_s", float("nan")), 3),
            "prepare_model_s": round(run.final.get("prepare_model_s", float("nan")), 3),
        },
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


# --- the benchmark ---------------------------------------------------------------------------------------


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


def _plain(spec: ModelSpec, config: Any, data: Interactions, threads: int) -> dict[str, Any]:
    """The same trainer in this process with LocalContext and `threads` torch threads."""
    trainer, _ = spec.load()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ctx = _TimedLocalContext()
        started = time.perf_counter()
        trainer(*spec.inputs(data, config), config, ctx)
        loop_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    rates = [h["samples_per_s"] for h in ctx.history]
    return {
        "runner": "plain",
        "torch_threads": threads,
        "train_fn_s": round(loop_s, 3),
        "epochs_s": round(sum(ctx.epoch_s), 3),
        "first_epoch_s": round(ctx.epoch_s[0], 3),
        "steady_epochs_s": round(sum(ctx.epoch_s[1:]), 3),
        "loop_samples_per_s": round(len(data) * len(rates) / loop_s, 1),
        "samples_per_s": round(_mean(rates), 1),
        "samples_per_s_after_first": round(_mean(rates[1:]), 1),
        "epochs": [round(r, 1) for r in rates],
    }


def bench(args: argparse.Namespace) -> int:
    import platform

    import ray

    spec = MODELS[args.model]
    config = build_config(spec, args.epochs, args.set)
    ray_info = connect(args.address, args.num_cpus)
    results: list[dict[str, Any]] = []
    try:
        data, data_info = load_data(args.feature_repo, args.limit)
        data_ref = ray.put(data)
        storage = Path(tempfile.mkdtemp(prefix="ray-bench-"))
        # One untimed epoch first: this process pays its one-time costs (lazy imports on first use of the
        # optimizer, allocator warm-up) outside the timed plain runs. A Ray worker is a fresh process: it takes
        # its optimiser step before its timer starts (_warm_up_optimizer); the rest it pays in epoch 1.
        _plain(spec, dataclasses.replace(config, epochs=1), data, 1)
        for repeat in range(args.repeats):
            for threads in args.plain_threads:
                row = _plain(spec, config, data, threads)
                results.append({"repeat": repeat, **row})
                log.info("plain, %d threads: %.1fs, %.0f samples/s", threads, row["train_fn_s"], row["samples_per_s"])
            for workers in args.workers:
                run = fit(
                    args.model,
                    config,
                    data_ref,
                    workers,
                    False,
                    storage,
                    2,
                    f"bench-{repeat}-{workers}w-every{args.report_every}",
                    args.report_every,
                )
                rates = [h["samples_per_s"] for h in run.history]
                loop_s = run.final.get("train_fn_s", float("nan"))
                row = {
                    "runner": "ray",
                    "workers": workers,
                    "torch_threads": int(run.final.get("torch_threads", 0)),
                    "fit_s": round(run.fit_s, 3),
                    "train_fn_s": round(loop_s, 3),
                    "startup_s": round(run.fit_s - loop_s, 3),
                    "epochs_s": round(sum(h["epoch_s"] for h in run.history), 3),
                    "first_epoch_s": round(run.history[0]["epoch_s"], 3),
                    "steady_epochs_s": round(sum(h["epoch_s"] for h in run.history[1:]), 3),
                    "report_s": round(run.final.get("report_s", float("nan")), 3),
                    "prepare_model_s": round(run.final.get("prepare_model_s", float("nan")), 3),
                    "loop_samples_per_s": round(len(data) * len(rates) / loop_s, 1),
                    "samples_per_s": round(_mean(rates), 1),
                    "samples_per_s_after_first": round(_mean(rates[1:]), 1),
                    "epochs": [round(r, 1) for r in rates],
                }
                results.append({"repeat": repeat, **row})
                shutil.rmtree(Path(run.artifacts[0]).parent, ignore_errors=True)
                log.info(
                    "ray, %d workers: fit %.1fs (loop %.1fs), %.0f samples/s",
                    workers,
                    run.fit_s,
                    loop_s,
                    row["samples_per_s"],
                )
        shutil.rmtree(storage, ignore_errors=True)
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
        "summary": _summary(results),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    return 0


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per runner: median loop time and throughput over repeats; Ray's loop time against each plain run's."""

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    plain = {
        t: [r for r in results if r["runner"] == "plain" and r["torch_threads"] == t]
        for t in {r["torch_threads"] for r in results if r["runner"] == "plain"}
    }
    out: dict[str, Any] = {}
    for threads, rows in sorted(plain.items()):
        out[f"plain_{threads}t"] = {
            "train_fn_s": med(rows, "train_fn_s"),
            "epochs_s": med(rows, "epochs_s"),
            "first_epoch_s": med(rows, "first_epoch_s"),
            "steady_epochs_s": med(rows, "steady_epochs_s"),
            "loop_samples_per_s": med(rows, "loop_samples_per_s"),
            "samples_per_s": med(rows, "samples_per_s"),
        }
    for workers in sorted({r["workers"] for r in results if r["runner"] == "ray"}):
        rows = [r for r in results if r["runner"] == "ray" and r["workers"] == workers]
        entry: dict[str, Any] = {
            "fit_s": med(rows, "fit_s"),
            "train_fn_s": med(rows, "train_fn_s"),
            "startup_s": med(rows, "startup_s"),
            "epochs_s": med(rows, "epochs_s"),
            "first_epoch_s": med(rows, "first_epoch_s"),
            "steady_epochs_s": med(rows, "steady_epochs_s"),
            "report_s": med(rows, "report_s"),
            "loop_samples_per_s": med(rows, "loop_samples_per_s"),
            "samples_per_s": med(rows, "samples_per_s"),
        }
        for threads in sorted(plain):
            base = out[f"plain_{threads}t"]
            entry[f"steady_epochs_vs_plain_{threads}t"] = round(entry["steady_epochs_s"] / base["steady_epochs_s"], 3)
            entry[f"epochs_vs_plain_{threads}t"] = round(entry["epochs_s"] / base["epochs_s"], 3)
            entry[f"train_fn_vs_plain_{threads}t"] = round(entry["train_fn_s"] / base["train_fn_s"], 3)
            entry[f"fit_vs_plain_{threads}t"] = round(entry["fit_s"] / base["train_fn_s"], 3)
        out[f"ray_{workers}w"] = entry
    return out


# --- command line ----------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bpr_mf", choices=sorted(MODELS), help="registered model to train")
    parser.add_argument("--epochs", type=int, help="epochs (default: the model config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--address", help="Ray cluster: auto, host:port or ray://host:10001 (default RAY_ADDRESS)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray started without an address")
    parser.add_argument(
        "--feature-repo",
        type=Path,
        default=CommonSettings().feature_repo,
        help="the Feast repository (default RECSYS_FEATURE_REPO or features/)",
    )
    parser.add_argument("--limit", type=int, help="train on the most recent N interactions only")


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else None
    import sys

    args_in = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if args_in[:1] == ["bench"]:
        parser = argparse.ArgumentParser(
            prog="python -m training.ray_jobs bench",
            description="Ray Train against the same loop in plain PyTorch (LocalContext); prints JSON.",
        )
        _common(parser)
        parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
        parser.add_argument("--plain-threads", type=int, nargs="+", default=[1, 2], help="torch threads, plain runs")
        parser.add_argument("--repeats", type=int, default=1)
        parser.add_argument("--report-every", type=int, default=1, help="Ray runs: report every N epochs")
        parser.add_argument("--json-out", type=Path, help="also write the JSON here")
        return bench(parser.parse_args(args_in[1:]))
    parser = argparse.ArgumentParser(prog="python -m training.ray_jobs", description=__doc__.split("\n\n")[0])
    _common(parser)
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (one process each)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="artifacts folder (default var/artifacts/<model>)"
    )
    parser.add_argument("--storage-path", type=Path, default=DEFAULT_STORAGE, help="Ray Train results and checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept per run")
    parser.add_argument("--report-every", type=int, default=1, help="report (and checkpoint) every N epochs")
    args = parser.parse_args(args_in)
    try:
        return train(args)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    # Run through the package name, so that Ray pickles the train loop by reference, not as __main__ code.
    from training.ray_jobs import main as _main

    raise SystemExit(_main())


# --- any trainer function, for the bundle pipeline ---------------------------------------------------------

MODULE_FILE = "module.pt"


def _function_loop(cfg: dict[str, Any]) -> None:
    """TorchTrainer loop for `run_function`: the trainer `module:function` on broadcast arguments; rank 0's
    final checkpoint holds the whole trained module (pickled), which the driver loads back."""
    import importlib

    import ray
    import ray.train

    module_name, _, function_name = cfg["trainer"].partition(":")
    trainer = getattr(importlib.import_module(module_name), function_name)
    args = ray.get(cfg["args"])
    ctx = RayTrainContext(cfg["name"], getattr(cfg["config"], "epochs", None))
    model = trainer(*args, cfg["config"], ctx)
    if ctx.rank != 0:
        ray.train.report({"final": 1.0})
        return
    with tempfile.TemporaryDirectory(prefix="final-") as tmp:
        torch.save(unwrap(model), Path(tmp) / MODULE_FILE)
        (Path(tmp) / HISTORY).write_text(json.dumps({"epochs": ctx.history, "artifacts": []}))
        ray.train.report({"final": 1.0}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def run_function(
    trainer: str, args: tuple[Any, ...], config: Any, workers: int = 1, storage: Path = DEFAULT_STORAGE
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Trains `trainer` ("package.module:function", called as function(*args, config, ctx)) as one Ray Train
    job on the connected Ray; returns the trained module and the per-epoch history."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    os.environ.setdefault(POLL_INTERVAL_ENV, str(DEFAULT_POLL_INTERVAL_S))
    storage.mkdir(parents=True, exist_ok=True)
    name = f"{trainer.rpartition(':')[2]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{workers}w"
    result = TorchTrainer(
        _function_loop,
        train_loop_config={"trainer": trainer, "args": ray.put(args), "config": config, "name": name},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=workers),
        run_config=RunConfig(name=name, storage_path=str(storage.resolve()), checkpoint_config=CheckpointConfig(1)),
    ).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        module = torch.load(Path(ckpt) / MODULE_FILE, weights_only=False)
        history = json.loads((Path(ckpt) / HISTORY).read_text())["epochs"]
    return module, history
