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
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np
import tyro
from torch import nn

from artifacts import bundle as bundle_format
from artifacts import tower_inputs
from artifacts.ann_index import AnnIndex, choose_spec, default_index_contract
from artifacts.bundle import (
    AFFINITY_COMPONENT,
    AFFINITY_CONTRACT,
    GRAPH_COMPONENT,
    INDEX_COMPONENT,
    ITEM_TOWER_COMPONENT,
    QUERY_TOWER_COMPONENT,
    RANKER_COMPONENT,
    RETRIEVAL_COMPONENT,
    RETRIEVAL_CONTRACT,
    SEGMENTS_COMPONENT,
)
from artifacts.ranker_signature import MODEL_NAME, OUTPUT, input_specs, triton_version
from services.candidate.settings import CandidateSettings
from services.common.settings import CommonSettings
from training.data.feast_dataset import dataset_to_interactions, load_training_dataset, to_interactions, training_frame
from training.data.interactions import Interactions, load_offline
from training.data.offline import RECENT_POPULARITY_WEEKS
from training.data.training_data import FEATURE_REPO
from training.export import export_item_tower_onnx, export_onnx, publish_to_triton_repository
from training.loop import LocalContext
from training.models import two_tower as tt
from training.models.autoencoder import DLAE, EASE_MAX_ITEMS, EaseConfig, ease_weights
from training.models.dlrm import DlrmConfig
from training.models.lightgcn import LightGcnConfig
from training.models.ranker import build_ranker_features, ranker_examples, top_unseen
from training.models.registry import MODELS
from training.models.segments import SegmentConfig, user_segments
from training.models.wide_deep import WideDeepConfig

log = logging.getLogger("training.pipeline")

Ranker = Literal["dlrm", "wide_deep"]
#: The rankers the bundle can ship (names of the model table).
RANKERS: tuple[str, ...] = get_args(Ranker)


@dataclass(frozen=True)
class PipelineConfig:
    retrieval: tt.TwoTowerConfig = field(default_factory=tt.TwoTowerConfig)
    ranker: Ranker = "dlrm"
    dlrm: DlrmConfig = field(default_factory=DlrmConfig)
    wide_deep: WideDeepConfig = field(default_factory=WideDeepConfig)
    graph: LightGcnConfig = field(default_factory=LightGcnConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    item_affinity: EaseConfig | None = DLAE  # None: no item_affinity component

    @property
    def ranker_config(self) -> DlrmConfig | WideDeepConfig:
        return self.dlrm if self.ranker == "dlrm" else self.wide_deep

    def with_seed(self, seed: int) -> PipelineConfig:
        return replace(
            self,
            retrieval=replace(self.retrieval, seed=seed),
            dlrm=replace(self.dlrm, seed=seed),
            wide_deep=replace(self.wide_deep, seed=seed),
            graph=replace(self.graph, seed=seed),
            segments=replace(self.segments, seed=seed),
        )

    def with_epochs(self, cap: int) -> PipelineConfig:
        """Every model's epochs capped at `cap` (smoke runs and tests)."""
        return replace(
            self,
            retrieval=replace(self.retrieval, epochs=min(self.retrieval.epochs, cap)),
            dlrm=replace(self.dlrm, epochs=min(self.dlrm.epochs, cap)),
            wide_deep=replace(self.wide_deep, epochs=min(self.wide_deep.epochs, cap)),
            graph=replace(self.graph, epochs=min(self.graph.epochs, cap)),
        )


class Runner(Protocol):
    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        """Trains `model` (a name of training/models/registry.py) on its trainer's inputs."""
        ...


class LocalRunner:
    """Runs a model's trainer in this process (its epochs logged and shown as a progress bar)."""

    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        trainer = MODELS[model].trainer
        assert trainer is not None, f"{model} has no trainer"
        return trainer(*inputs, config, LocalContext())


@dataclass
class RayRunner:
    """Runs each trainer as a Ray Train job (training/ray/job.py) on a local Ray or the cluster at `address`."""

    workers: int = 1
    address: str | None = None
    storage: Path | None = None  # Ray Train results and checkpoints; shared storage on a multi-node cluster

    def __post_init__(self) -> None:
        from training.ray import job

        self.info = job.connect(self.address, num_cpus=2)

    def train(self, model: str, inputs: tuple[Any, ...], config: Any) -> nn.Module:
        from training.ray import job

        module, _ = job.train_module(model, inputs, config, self.workers, self.storage or job.DEFAULT_STORAGE)
        return module


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def _popularity(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """All-time and recent (last weeks of the data) interaction counts per item."""
    popularity = data.item_popularity()
    recent_mask = data.timestamps > int(data.timestamps.max()) - RECENT_POPULARITY_WEEKS * 7 * 86400
    recent = np.bincount(data.item_idx[recent_mask], minlength=data.n_items).astype(np.int64)
    return popularity, recent


def train_and_publish(
    data: Interactions, bundle_dir: Path, config: PipelineConfig | None = None, runner: Runner | None = None
) -> bundle_format.Bundle:
    """Trains the served models on `data` and publishes one bundle under `bundle_dir`."""
    config = config or PipelineConfig()
    runner = runner or LocalRunner()
    if config.ranker not in RANKERS:
        raise ValueError(f"unknown ranker {config.ranker!r}; expected one of {sorted(RANKERS)}")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    log.info("training on %d interactions (%d users x %d items)", len(data), data.n_users, data.n_items)

    t0 = time.perf_counter()
    retrieval = runner.train("two_tower", (data,), config.retrieval)
    assert isinstance(retrieval, tt.TwoTowerModel)
    item_vecs = tt.item_embeddings(retrieval)
    user_vecs = tt.user_vectors(retrieval, data)
    timings["retrieval_s"] = time.perf_counter() - t0

    indptr, seen = data.seen_csr()
    popularity, recent = _popularity(data)
    popular = np.lexsort((-recent, -popularity)).astype(np.int32)

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

    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = bundle_dir.parent if bundle_dir.parent.exists() else None
    staged = Path(tempfile.mkdtemp(dir=parent, prefix=".staging-"))
    user_ids, item_ids = np.asarray(data.user_ids, dtype=str), np.asarray(data.item_ids, dtype=str)
    np.savez(
        staged / "retrieval.npz",
        item_ids=item_ids,
        item_vectors=item_vecs,
        user_ids=user_ids,
        user_vectors=user_vecs,
        seen_indptr=indptr,
        seen_indices=seen.astype(np.int32),
        popular_items=popular,
        popularity=popularity,
        recent_popularity=recent,
    )
    np.savez(
        staged / "graph.npz", user_ids=user_ids, user_vectors=graph_users, item_ids=item_ids, item_vectors=graph_items
    )
    np.savez(
        staged / "segments.npz",
        user_ids=user_ids,
        user_segment=segments.assignments,
        centroids=segments.centroids,
        popular_by_segment=segments.popular_items,
        sizes=segments.sizes,
    )
    optional_components: dict[str, Any] = {}
    # The ANN index the candidate service would build for this catalogue, built once here and shipped, so that
    # service start-up and bundle swaps read it (an HNSW build over 1M items took ~100 s on 2 cores).
    index_contract = default_index_contract(data.n_items, CandidateSettings.model_fields["flat_max_items"].default)
    index_spec = choose_spec(data.n_items, CandidateSettings(index_type="auto"), index_contract)
    AnnIndex(item_vecs, index_spec, build_threads=os.cpu_count() or 1).write(staged / "item_index.faiss")
    optional_components[INDEX_COMPONENT] = {
        "file": "item_index.faiss",
        "contract": {
            "index": {"type": index_spec.kind, **index_spec.params},
            "items": data.n_items,
            "dim": int(item_vecs.shape[1]),
        },
    }
    if affinity is not None and config.item_affinity is not None:
        np.savez(staged / "item_affinity.npz", item_ids=item_ids, weights=affinity)
        optional_components[AFFINITY_COMPONENT] = {
            "file": "item_affinity.npz",
            "contract": {**AFFINITY_CONTRACT, "model": "dlae" if config.item_affinity.dropout > 0 else "ease"},
            "config": asdict(config.item_affinity),
        }
    tt.export_query_onnx(retrieval, staged / "query_tower.onnx")
    export_item_tower_onnx(
        retrieval.item, len(retrieval.vocab.genres), config.retrieval.title_tokens, staged / "item_tower.onnx"
    )
    ranker.eval()
    contract = features.contract
    export_onnx(ranker, contract, staged / "ranker.onnx")
    triton_model_version = triton_version(version)
    publish_to_triton_repository(
        bundle_dir / "triton", MODEL_NAME, triton_model_version, staged / "ranker.onnx", contract
    )
    dim = int(item_vecs.shape[1])
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
            RETRIEVAL_COMPONENT: {
                "file": "retrieval.npz",
                "contract": {
                    **RETRIEVAL_CONTRACT,
                    "dim": dim,
                    "model": "two_tower",
                    "bias_column": False,
                    "index": index_contract,
                },
                "config": asdict(config.retrieval),
            },
            QUERY_TOWER_COMPONENT: {
                "file": "query_tower.onnx",
                "contract": {
                    "inputs": list(tower_inputs.QUERY_INPUTS),
                    "output": tower_inputs.QUERY_OUTPUT,
                    "dim": dim,
                    "history_len": config.retrieval.history_len,
                    "unknown_user": -1,  # the user row to feed for users the model has not seen
                    "age_buckets": list(tower_inputs.AGE_BUCKETS),
                    "genders": list(tower_inputs.GENDERS),
                    "occupations": list(retrieval.vocab.occupations),
                    "devices": list(tower_inputs.DEVICES),
                },
            },
            ITEM_TOWER_COMPONENT: {
                "file": "item_tower.onnx",
                "contract": {
                    "inputs": list(tower_inputs.ITEM_INPUTS),
                    "output": tower_inputs.ITEM_OUTPUT,
                    "dim": dim,
                    "genres": list(retrieval.vocab.genres),
                    "title_buckets": config.retrieval.title_buckets,
                    "title_tokens": config.retrieval.title_tokens,
                    "year_edges": list(tower_inputs.YEAR_EDGES),
                },
            },
            RANKER_COMPONENT: {
                "file": "ranker.onnx",
                "contract": {
                    "model": MODEL_NAME,
                    "architecture": config.ranker,
                    "features": contract.to_json(),
                    "inputs": [s.name for s in input_specs(contract)],
                    "output": OUTPUT,
                    "triton_model": MODEL_NAME,
                    "triton_version": triton_model_version,
                },
                "config": asdict(ranker_cfg),
            },
            GRAPH_COMPONENT: {
                "file": "graph.npz",
                "contract": {"model": "lightgcn", "dim": int(graph_items.shape[1])},
                "config": asdict(config.graph),
            },
            SEGMENTS_COMPONENT: {
                "file": "segments.npz",
                "contract": {"k": int(segments.centroids.shape[0]), "space": "retrieval.user_vectors"},
                "config": asdict(config.segments),
            },
            **optional_components,
        },
        metrics={
            "training_seconds": round(time.perf_counter() - started, 1),
            **{k: round(v, 1) for k, v in timings.items()},
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
