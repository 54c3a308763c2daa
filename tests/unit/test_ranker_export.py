"""The exported ONNX ranker (what both serving backends run) matches the trained torch module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artifacts import ranker_features as rf
from artifacts.ranker_signature import MODEL_NAME, triton_config, triton_version
from services.ranking.backends import InProcessBackend
from training.export import export_onnx, publish_to_triton_repository
from training.models.ranker import MlpRankerModule, RankerConfig, train_ranker


def _contract() -> rf.RankerContract:
    return rf.build_contract(
        user_ids=["u1", "u2", "u3"],
        item_ids=["a", "b", "c", "d"],
        occupations=["artist", "student"],
        genres=["Comedy", "Drama"],
        dense=np.random.default_rng(0).random((20, len(rf.DENSE_FEATURES))),
        global_mean_rating=3.5,
    )


def _batch(contract: rf.RankerContract, rows: list[int]) -> rf.EncodedBatch:
    items = rf.encode_items(
        contract,
        item_ids=["a", "b", "c", "d"],
        genres=[["Comedy"], ["Drama"], [], ["Comedy", "Drama"]],
        popularity=np.array([10, 3, 0, 7]),
        mean_rating=np.array([4.0, 3.0, 0.0, 2.5]),
        recent_popularity=np.array([1, 0, 0, 2]),
        year=np.array([1995, 0, 2001, 1980]),
    )
    user_sparse, user_dense = rf.encode_user(contract, "u2", 25, "F", "student", 12, 4.2)
    context = rf.encode_context(np.array([21]), np.array([4]))
    return rf.encode_batch(contract, user_sparse, user_dense, context, items, np.array(rows))


def test_shapes_and_unknown_values_map_to_slot_zero() -> None:
    contract = _contract()
    batch = _batch(contract, [3, 0, 2, 1, 0])
    assert batch.sparse.shape == (5, len(rf.SPARSE_FEATURES))
    assert batch.genres.shape == (5, 2) and batch.dense.shape == (5, len(rf.DENSE_FEATURES))
    sparse, _ = rf.encode_user(contract, "stranger", 99, "X", "astronaut", 0, 0.0)
    assert sparse.tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("rows", [[1], [3, 0, 2, 1, 0], list(range(4)) * 300])
def test_onnx_export_matches_torch_at_any_batch_size(tmp_path: Path, rows: list[int]) -> None:
    contract = _contract()
    batch = _batch(contract, rows)
    module = MlpRankerModule(contract.cardinalities(), len(contract.genres), RankerConfig(hidden=(32, 16))).eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(batch.sparse), torch.from_numpy(batch.genres), torch.from_numpy(batch.dense))
    backend = InProcessBackend(export_onnx(module, contract, tmp_path / "ranker.onnx"), contract)
    np.testing.assert_allclose(backend.run(batch), torch.sigmoid(logits).numpy(), rtol=1e-5, atol=1e-6)


def test_triton_repository_layout_and_config(tmp_path: Path) -> None:
    contract = _contract()
    module = MlpRankerModule(contract.cardinalities(), len(contract.genres), RankerConfig(hidden=(8,))).eval()
    onnx = export_onnx(module, contract, tmp_path / "ranker.onnx")
    version = triton_version("20261123T153018Z")
    assert version == 20261123153018
    target = publish_to_triton_repository(tmp_path / "repo", MODEL_NAME, version, onnx, contract)
    assert (target / "model.onnx").read_bytes() == onnx.read_bytes()
    config = (tmp_path / "repo" / MODEL_NAME / "config.pbtxt").read_text()
    assert config == triton_config(MODEL_NAME, contract)
    assert 'backend: "onnxruntime"' in config and "dynamic_batching" in config and "instance_group" not in config
    assert f"dims: [ {len(rf.SPARSE_FEATURES)} ]" in config and "dims: [ 2 ]" in config


def test_training_learns_a_separable_signal(tmp_path: Path) -> None:
    contract = _contract()
    rng = np.random.default_rng(0)
    n = 2000
    sparse = np.zeros((n, len(rf.SPARSE_FEATURES)), dtype=np.int64)
    sparse[:, 6] = rng.integers(1, 5, n)  # item index 1..4
    labels = (sparse[:, 6] <= 2).astype(np.float32)  # items a and b are positives
    batch = rf.EncodedBatch(sparse, np.zeros((n, 2), np.float32), np.zeros((n, len(rf.DENSE_FEATURES)), np.float32))
    module = train_ranker(batch, labels, contract.cardinalities(), RankerConfig(epochs=10, batch_size=128, lr=0.01))
    scores = InProcessBackend(export_onnx(module.eval(), contract, tmp_path / "m.onnx"), contract).run(batch)
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.5
