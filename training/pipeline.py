"""Trains every model the stack serves and publishes a bundle: `python -m training.pipeline` (`make train`).

Reads the training interactions through the Feast offline store (historical interactions plus the live
feedback log, training/data/training_data.py), then trains, each as a Ray Train job (`--local` runs the same
loops in this process):

1. the two-tower retrieval model (training/models/two_tower.py): item embeddings for the ANN index, user
   vectors, and the query and item towers as ONNX for request-time use;
2. the ranker, DLRM or Wide & Deep (`--ranker`), on the interactions with negatives drawn from the retrieval
   model's top candidates and at random; exported to ONNX and to the Triton model repository;
3. LightGCN graph embeddings for the rerank stage's graph affinity;
4. k-means user segments over the retrieval user vectors, with each segment's popular items;
5. DLAE item-to-item weights (the denoising cousin of EASE; catalogues up to EASE_MAX_ITEMS items): the
   candidate service scores every candidate against the user's whole history with them, and the rerank stage
   blends that affinity in.

The bundle (artifacts/bundle.py) is published atomically; services switch to it without a restart.
Every model setting is a flag: `--config.retrieval.epochs 3`, `--config.dlrm.sampling.negatives 4`, ...
(`--help` lists them with their defaults); `--epochs N` caps every model's epochs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from artifacts import bundle as bundle_format
from artifacts.bundle import (
    AFFINITY_COMPONENT,
    AFFINITY_CONTRACT,
    INDEX_COMPONENT,
)
from services.common.settings import CommonSettings
from training import bundle_writer
from training.data.feast_dataset import dataset_to_interactions, load_training_dataset, to_interactions, training_frame
from training.data.interactions import Interactions, load_offline
from training.data.training_data import FEATURE_REPO
from training.models import two_tower as tt
from training.models import two_tower_inference as tti
from training.models.autoencoder import EASE_MAX_ITEMS, ease_weights
from training.models.ranker import build_ranker_features, ranker_examples, top_unseen
from training.models.segments import user_segments
from training.pipeline_config import RANKERS, PipelineConfig, Ranker
from training.runners import LocalRunner, RayRunner, Runner

log = logging.getLogger("training.pipeline")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def train_models(data: Interactions, config: PipelineConfig, runner: Runner) -> bundle_writer.TrainedModels:
    """Trains every served model on `data`, the ranker on negatives from the retrieval model's top items."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    retrieval = runner.train("two_tower", (data,), config.retrieval)
    assert isinstance(retrieval, tt.TwoTowerModel)
    item_vecs = tti.item_embeddings(retrieval)
    user_vecs = tti.user_vectors(retrieval, data)
    timings["retrieval_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ranker_cfg = config.ranker_config
    features = build_ranker_features(data)
    hard_pool = None
    if ranker_cfg.sampling.hard_fraction > 0:
        scores = user_vecs @ item_vecs.T
        hard_pool = top_unseen(scores, data, np.arange(data.n_users), ranker_cfg.sampling.hard_pool)
    batch, labels = ranker_examples(features, data, hard_pool, ranker_cfg.sampling, seed=ranker_cfg.seed)
    ranker = runner.train(config.ranker, (batch, labels, features.contract.cardinalities()), ranker_cfg)
    timings["ranker_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    graph = runner.train("lightgcn", (data,), config.graph)
    graph_users, graph_items = graph.export()  # type: ignore[operator]
    timings["graph_s"] = time.perf_counter() - t0

    segments = user_segments(user_vecs, data, config.segments)

    affinity = None
    if config.item_affinity is not None and data.n_items <= EASE_MAX_ITEMS:
        t0 = time.perf_counter()
        affinity = ease_weights(data, config.item_affinity)
        timings["item_affinity_s"] = time.perf_counter() - t0
    elif config.item_affinity is not None:
        log.info("no item_affinity component: %d items is more than EASE's %d", data.n_items, EASE_MAX_ITEMS)
    return bundle_writer.TrainedModels(
        retrieval, item_vecs, user_vecs, ranker, features.contract, graph_users, graph_items, segments, affinity,
        timings,
    )  # fmt: skip


def train_and_publish(
    data: Interactions, bundle_dir: Path, config: PipelineConfig | None = None, runner: Runner | None = None
) -> bundle_format.Bundle:
    """Trains the served models on `data` and publishes one bundle under `bundle_dir`."""
    config = config or PipelineConfig()
    runner = runner or LocalRunner()
    if config.ranker not in RANKERS:
        raise ValueError(f"unknown ranker {config.ranker!r}; expected one of {sorted(RANKERS)}")
    started = time.perf_counter()
    log.info("training on %d interactions (%d users x %d items)", len(data), data.n_users, data.n_items)
    trained = train_models(data, config, runner)

    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = bundle_dir.parent if bundle_dir.parent.exists() else None
    staged = Path(tempfile.mkdtemp(dir=parent, prefix=".staging-"))
    bundle_writer.write_arrays(staged, data, trained)
    index_contract, index_component = bundle_writer.write_index(staged, data, trained.item_vectors)
    optional_components: dict[str, Any] = {INDEX_COMPONENT: index_component}
    if trained.affinity is not None and config.item_affinity is not None:
        np.savez(staged / "item_affinity.npz", item_ids=np.asarray(data.item_ids, dtype=str), weights=trained.affinity)
        optional_components[AFFINITY_COMPONENT] = {
            "file": "item_affinity.npz",
            "contract": {**AFFINITY_CONTRACT, "model": "dlae" if config.item_affinity.dropout > 0 else "ease"},
            "config": asdict(config.item_affinity),
        }
    triton_model_version = bundle_writer.export_models(staged, bundle_dir, version, trained, config)
    manifest = bundle_format.Manifest(
        version=version,
        format_version=bundle_format.FORMAT_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
        dataset=f"{data.n_users} users, {data.n_items} items, {len(data)} interactions",
        data_time_range=(
            datetime.fromtimestamp(int(data.timestamps.min()), UTC).isoformat(),
            datetime.fromtimestamp(int(data.timestamps.max()), UTC).isoformat(),
        ),
        components={
            **bundle_writer.components(trained, config, index_contract, triton_model_version),
            **optional_components,
        },
        metrics={
            "training_seconds": round(time.perf_counter() - started, 1),
            **{k: round(v, 1) for k, v in trained.timings.items()},
        },
    )
    published = bundle_format.publish(bundle_dir, staged, manifest)
    log.info("published bundle %s to %s in %.1fs", version, published.path, time.perf_counter() - started)
    return published


@dataclass(kw_only=True)
class PipelineArgs:
    feature_repo: Path = FEATURE_REPO
    """read the training data through Feast"""
    offline_dir: Path | None = None
    """read the Parquet sources directly instead (no Feast)"""
    bundle_dir: Path = field(default_factory=lambda: CommonSettings().bundle_dir)
    ranker: Ranker | None = None
    """the ranker to ship (default: the config's, dlrm); short for --config.ranker"""
    epochs: int | None = None
    """cap every model's epochs (smoke runs)"""
    local: bool = False
    """train in this process instead of as Ray Train jobs"""
    workers: int = 1
    """Ray Train workers per model"""
    address: str | None = None
    """Ray cluster (default: RAY_ADDRESS, else a local Ray)"""
    storage_path: Path | None = None
    """Ray Train results and checkpoints (default var/ray_results)"""
    config: PipelineConfig = field(default_factory=PipelineConfig)
    """every model's settings"""

    def pipeline_config(self) -> PipelineConfig:
        config = self.config if self.ranker is None else replace(self.config, ranker=self.ranker)
        return config if self.epochs is None else config.with_epochs(self.epochs)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(
        PipelineArgs,
        args=sys.argv[1:] if argv is None else argv,
        prog="python -m training.pipeline",
        description=__doc__,
        config=(tyro.conf.AvoidSubcommands,),  # item_affinity: flags of its default, no None subcommand
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    runner: Runner = LocalRunner() if args.local else RayRunner(args.workers, args.address, args.storage_path)
    if args.offline_dir is not None:
        data = load_offline(args.offline_dir)
    elif not args.local:  # Feast point-in-time join -> Ray Data -> Interactions, as every Ray training job reads it
        data = dataset_to_interactions(load_training_dataset(args.feature_repo))
    else:
        data = to_interactions(training_frame(args.feature_repo))
    train_and_publish(data, args.bundle_dir, args.pipeline_config(), runner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
