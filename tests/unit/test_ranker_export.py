"""The exported ranker evaluated with NumPy (the serving runtime) matches the trained torch module."""

from __future__ import annotations

import numpy as np
import torch

from services.ranking import features as rf
from services.ranking.model import MlpRanker
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


def _batch(contract: rf.RankerContract) -> rf.EncodedBatch:
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
    return rf.encode_batch(contract, user_sparse, user_dense, context, items, np.array([3, 0, 2, 1, 0]))


def test_shapes_and_unknown_values_map_to_slot_zero() -> None:
    contract = _contract()
    batch = _batch(contract)
    assert batch.sparse.shape == (5, len(rf.SPARSE_FEATURES))
    assert batch.genres.shape == (5, 2) and batch.dense.shape == (5, len(rf.DENSE_FEATURES))
    sparse, _ = rf.encode_user(contract, "stranger", 99, "X", "astronaut", 0, 0.0)
    assert sparse.tolist() == [[0, 0, 0, 0]]


def test_numpy_runtime_matches_torch() -> None:
    contract = _contract()
    batch = _batch(contract)
    module = MlpRankerModule(contract.cardinalities(), len(contract.genres), RankerConfig(hidden=(32, 16)))
    with torch.no_grad():
        expected = module(torch.from_numpy(batch.sparse), torch.from_numpy(batch.genres), torch.from_numpy(batch.dense))
    runtime = MlpRanker(module.export_weights(), n_sparse=len(rf.SPARSE_FEATURES))
    np.testing.assert_allclose(runtime.logits(batch), expected.numpy(), rtol=1e-5, atol=1e-5)
    probs = runtime.scores(batch)
    assert ((probs > 0) & (probs < 1)).all()


def test_training_learns_a_separable_signal() -> None:
    contract = _contract()
    rng = np.random.default_rng(0)
    n = 2000
    sparse = np.zeros((n, len(rf.SPARSE_FEATURES)), dtype=np.int64)
    sparse[:, 6] = rng.integers(1, 5, n)  # item index 1..4
    labels = (sparse[:, 6] <= 2).astype(np.float32)  # items a and b are positives
    batch = rf.EncodedBatch(sparse, np.zeros((n, 2), np.float32), np.zeros((n, len(rf.DENSE_FEATURES)), np.float32))
    module = train_ranker(batch, labels, contract.cardinalities(), RankerConfig(epochs=10, batch_size=128, lr=0.01))
    scores = MlpRanker(module.export_weights(), len(rf.SPARSE_FEATURES)).scores(batch)
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.5
