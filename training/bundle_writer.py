"""Writes what a pipeline run trained as the files and manifest entries of a bundle's components."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from artifacts import tower_inputs
from artifacts.ann_index import AnnIndex, choose_spec, default_index_contract
from artifacts.bundle import (
    GRAPH_COMPONENT,
    ITEM_TOWER_COMPONENT,
    QUERY_TOWER_COMPONENT,
    RANKER_COMPONENT,
    RETRIEVAL_COMPONENT,
    RETRIEVAL_CONTRACT,
    SEGMENTS_COMPONENT,
)
from artifacts.ranker_features import RankerContract
from artifacts.ranker_signature import MODEL_NAME, OUTPUT, input_specs, triton_version
from services.candidate.settings import CandidateSettings
from training.data.interactions import Interactions
from training.data.offline import RECENT_POPULARITY_WEEKS
from training.export import export_item_tower_onnx, export_onnx, publish_to_triton_repository
from training.models import two_tower as tt
from training.models import two_tower_inference as tti
from training.models.segments import Segments
from training.pipeline_config import PipelineConfig


@dataclass
class TrainedModels:
    """What one training run produced, before it is written as a bundle."""

    retrieval: tt.TwoTowerModel
    item_vectors: np.ndarray
    user_vectors: np.ndarray
    ranker: nn.Module
    ranker_contract: RankerContract
    graph_users: np.ndarray
    graph_items: np.ndarray
    segments: Segments
    affinity: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)


def popularity_counts(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """All-time and recent (last weeks of the data) interaction counts per item."""
    popularity = data.item_popularity()
    recent_mask = data.timestamps > int(data.timestamps.max()) - RECENT_POPULARITY_WEEKS * 7 * 86400
    recent = np.bincount(data.item_idx[recent_mask], minlength=data.n_items).astype(np.int64)
    return popularity, recent


def write_arrays(staged: Path, data: Interactions, trained: TrainedModels) -> None:
    """The retrieval, graph and segments components."""
    indptr, seen = data.seen_csr()
    popularity, recent = popularity_counts(data)
    popular = np.lexsort((-recent, -popularity)).astype(np.int32)
    user_ids, item_ids = np.asarray(data.user_ids, dtype=str), np.asarray(data.item_ids, dtype=str)
    np.savez(
        staged / "retrieval.npz",
        item_ids=item_ids,
        item_vectors=trained.item_vectors,
        user_ids=user_ids,
        user_vectors=trained.user_vectors,
        seen_indptr=indptr,
        seen_indices=seen.astype(np.int32),
        popular_items=popular,
        popularity=popularity,
        recent_popularity=recent,
    )
    np.savez(
        staged / "graph.npz",
        user_ids=user_ids,
        user_vectors=trained.graph_users,
        item_ids=item_ids,
        item_vectors=trained.graph_items,
    )
    segments = trained.segments
    np.savez(
        staged / "segments.npz",
        user_ids=user_ids,
        user_segment=segments.assignments,
        centroids=segments.centroids,
        popular_by_segment=segments.popular_items,
        sizes=segments.sizes,
    )


def write_index(staged: Path, data: Interactions, item_vecs: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ANN index the candidate service would build for this catalogue, built once here and shipped, so that
    service start-up and bundle swaps read it (an HNSW build over 1M items took ~100 s on 2 cores). Returns the
    retrieval contract's index part and the index component."""
    index_contract = default_index_contract(data.n_items, CandidateSettings.model_fields["flat_max_items"].default)
    index_spec = choose_spec(data.n_items, CandidateSettings(index_type="auto"), index_contract)
    AnnIndex(item_vecs, index_spec, build_threads=os.cpu_count() or 1).write(staged / "item_index.faiss")
    component = {
        "file": "item_index.faiss",
        "contract": {
            "index": {"type": index_spec.kind, **index_spec.params},
            "items": data.n_items,
            "dim": int(item_vecs.shape[1]),
        },
    }
    return index_contract, component


def export_models(staged: Path, bundle_dir: Path, version: str, trained: TrainedModels, config: PipelineConfig) -> int:
    """The towers and the ranker as ONNX, the ranker also into the Triton repository; returns its Triton version."""
    retrieval = trained.retrieval
    tti.export_query_onnx(retrieval, staged / "query_tower.onnx")
    export_item_tower_onnx(
        retrieval.item, len(retrieval.vocab.genres), config.retrieval.title_tokens, staged / "item_tower.onnx"
    )
    trained.ranker.eval()
    export_onnx(trained.ranker, trained.ranker_contract, staged / "ranker.onnx")
    triton_model_version = triton_version(version)
    publish_to_triton_repository(
        bundle_dir / "triton", MODEL_NAME, triton_model_version, staged / "ranker.onnx", trained.ranker_contract
    )
    return triton_model_version


def components(
    trained: TrainedModels, config: PipelineConfig, index_contract: dict[str, Any], triton_model_version: int
) -> dict[str, Any]:
    """The manifest entries of the components every bundle has."""
    dim = int(trained.item_vectors.shape[1])
    contract = trained.ranker_contract
    vocab = trained.retrieval.vocab
    return {
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
                "occupations": list(vocab.occupations),
                "devices": list(tower_inputs.DEVICES),
            },
        },
        ITEM_TOWER_COMPONENT: {
            "file": "item_tower.onnx",
            "contract": {
                "inputs": list(tower_inputs.ITEM_INPUTS),
                "output": tower_inputs.ITEM_OUTPUT,
                "dim": dim,
                "genres": list(vocab.genres),
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
            "config": asdict(config.ranker_config),
        },
        GRAPH_COMPONENT: {
            "file": "graph.npz",
            "contract": {"model": "lightgcn", "dim": int(trained.graph_items.shape[1])},
            "config": asdict(config.graph),
        },
        SEGMENTS_COMPONENT: {
            "file": "segments.npz",
            "contract": {"k": int(trained.segments.centroids.shape[0]), "space": "retrieval.user_vectors"},
            "config": asdict(config.segments),
        },
    }
