"""One model of the table (training/models/registry.py) trained as a Ray Train job, and its driver.

Each run is a `TorchTrainer` (one process per worker, DDP over gloo on CPU, NCCL on GPU); the model's own
trainer runs unchanged inside every worker with a `RayTrainContext` as its TrainContext. The data goes to
the object store once and every worker reads it by reference. Without an address and RAY_ADDRESS a local
Ray is started (dashboard on); otherwise the job connects to that cluster.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artifacts.paths import DEFAULT_VAR, REPO_ROOT
from training.data.interactions import Interactions
from training.models.registry import MODELS
from training.ray.checkpoint import FinalCheckpoint, read_final, report_final
from training.ray.context import RayTrainContext, warm_up_optimizer

log = logging.getLogger("training.ray")

DEFAULT_STORAGE = DEFAULT_VAR / "ray_results"
#: Kept out of the working dir uploaded for `ray://` connections (and by the e2e test's job submission).
#: `ray job submit --working-dir .` applies .gitignore, which lists .venv/ and var/ already.
RUNTIME_ENV_EXCLUDES = [".venv", "var", ".git", "**/__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"]
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
DEFAULT_POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Scaling:
    """Where and how a run trains, and what Ray Train keeps of it."""

    workers: int = 1
    use_gpu: bool = False
    storage: Path = DEFAULT_STORAGE  # results and checkpoints; shared storage on a multi-node cluster
    keep_checkpoints: int = 2
    report_every: int = 1  # report (and checkpoint) every N epochs


@dataclass
class RayRun:
    """What one TorchTrainer run produced, as seen by the driver."""

    final: FinalCheckpoint
    checkpoint: str
    fit_s: float
    metrics: dict[str, float] = field(default_factory=dict)  # the last report's (timings, "final")

    @property
    def history(self) -> list[dict[str, float]]:
        return self.final.history


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """The TorchTrainer's loop: fetch the broadcast data, run the model's trainer, report the final checkpoint.
    `cfg["data"]` is the Interactions (the trainer's inputs are built here and the model's export is kept) or,
    with `cfg["prebuilt"]`, the trainer's inputs themselves (the pickled module is kept)."""
    import ray

    spec = MODELS[cfg["model"]]
    assert spec.trainer is not None
    config = cfg["config"]
    warm_up_optimizer()
    started = time.perf_counter()
    payload = ray.get(cfg["data"])
    fetched = time.perf_counter()
    ctx = RayTrainContext(cfg["run"], getattr(config, "epochs", None), cfg["report_every"])
    inputs = payload if cfg["prebuilt"] else spec.inputs(payload, config)
    model = spec.trainer(*inputs, config, ctx)
    trained = time.perf_counter()

    def export(module: nn.Module, out: Path) -> list[str]:
        return spec.export(module, payload, out)

    metrics = {
        "final": 1.0,
        **ctx.timings(),
        "data_fetch_s": fetched - started,
        "train_fn_s": trained - fetched,
        "torch_threads": torch.get_num_threads(),
    }
    report_final(ctx.rank, model, metrics, ctx.history, None if cfg["prebuilt"] else export)


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


def shown(path: Path) -> str:
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
        "feature_repo": shown(feature_repo),
        "interactions": len(data),
        "users": data.n_users,
        "items": data.n_items,
        "load_s": round(time.perf_counter() - started, 3),
    }
    log.info("data: %d interactions, %d users, %d items", len(data), data.n_users, data.n_items)
    return data, info


def fit(
    model: str, config: Any, data_ref: Any, scaling: Scaling, name: str | None = None, prebuilt: bool = False
) -> RayRun:
    """Runs one TorchTrainer of `model` over the broadcast data (see train_loop_per_worker for `prebuilt`)
    and reads its final checkpoint back."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling.storage.mkdir(parents=True, exist_ok=True)
    # Ray Train's controller collects reports when it polls the workers (every 2 s by default) and each worker
    # queues at most one, so an epoch shorter than the poll interval would wait for it at every report.
    os.environ.setdefault(POLL_INTERVAL_ENV, str(DEFAULT_POLL_INTERVAL_S))  # propagated to the controller
    name = name or f"{model}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{scaling.workers}w"
    trainer = TorchTrainer(
        train_loop_per_worker,
        # The data travels as one object-store reference rather than Ray Data shards: every trainer reads the
        # whole interaction table (each epoch reshuffles through the shared seeded permutation, negatives and
        # vocabularies span all users and items), the vocabularies must be identical on every rank for DDP's
        # embedding tables to line up, and it is small (MovieLens-100K: ~3 MB) and read zero-copy on a node.
        train_loop_config={
            "model": model,
            "run": name if prebuilt else model,
            "config": config,
            "data": data_ref,
            "prebuilt": prebuilt,
            "report_every": scaling.report_every,
        },
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.workers, use_gpu=scaling.use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=str(scaling.storage.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=scaling.keep_checkpoints),
        ),
    )
    started = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - started
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        final = read_final(Path(ckpt))
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    return RayRun(final, result.checkpoint.path, fit_s, metrics)


def train_module(
    model: str, inputs: tuple[Any, ...], config: Any, workers: int = 1, storage: Path = DEFAULT_STORAGE
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Trains `model` (a name of the table) on prebuilt trainer inputs as one Ray Train job on the connected
    Ray; returns the trained module and the per-epoch history (the bundle pipeline's runner)."""
    import ray

    run = fit(model, config, ray.put(inputs), Scaling(workers, storage=storage, keep_checkpoints=1), prebuilt=True)
    run.final.discard()
    if run.final.module is None:
        raise RuntimeError(f"the Ray Train run of {model} returned no module")
    return run.final.module, run.history
