"""The models of training/models/: shapes, one short training run each on a small synthetic data set, exports
(ONNX parity of the rankers and the query tower, embedding shapes), cold items, segments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from torch import nn

from artifacts import ranker_features as rf
from artifacts.tower_inputs import QUERY_INPUTS
from services.ranking.backends import InProcessBackend
from training.data.interactions import Interactions
from training.export import export_onnx
from training.loop import LocalContext
from training.models.autoencoder import MultVaeConfig, MultVaeRecommender
from training.models.base import Recommender
from training.models.baselines import BprMfRecommender, ItemKnnConfig, ItemKnnRecommender, PopularityRecommender
from training.models.dlrm import DlrmConfig, DlrmModule, DlrmRecommender, train_dlrm
from training.models.history import latest_histories, sequence_examples
from training.models.lightgcn import LightGcnConfig, LightGcnRecommender, normalized_adjacency, train_lightgcn
from training.models.mf import MfConfig
from training.models.ncf import NcfConfig, NcfRecommender
from training.models.ranker import NegativeSampling, build_ranker_features, ranker_examples, top_unseen
from training.models.segments import SegmentConfig, user_segments
from training.models.sequence import SequenceConfig, SequenceRecommender
from training.models.two_tower import TwoTowerConfig, train_two_tower
from training.models.two_tower_inference import (
    TwoTowerRecommender,
    cold_item_embeddings,
    export_query_onnx,
    item_embeddings,
    user_vectors,
)
from training.models.wide_deep import WideDeepConfig, WideDeepModule, WideDeepRecommender, train_wide_deep

GENRES = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi"]
N_USERS, N_ITEMS = 24, 40

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> Interactions:
    rng = np.random.default_rng(0)
    users = pd.DataFrame(
        {
            "user_id": [str(u + 1) for u in range(N_USERS)],
            "age_bucket": rng.choice([0, 18, 25, 35, 45, 50, 56], N_USERS),
            "gender": rng.choice(["M", "F"], N_USERS),
            "occupation": rng.choice(["artist", "student", "writer"], N_USERS),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [str(i + 1) for i in range(N_ITEMS)],
            "title": [f"Movie {['Star', 'Love', 'War', 'Night'][i % 4]} {i} ({1970 + i})" for i in range(N_ITEMS)],
            "year": [1970 + i if i % 7 else 0 for i in range(N_ITEMS)],
            "genres": [[GENRES[i % 5], GENRES[(i * 3) % 5]] for i in range(N_ITEMS)],
        }
    )
    # Two tastes: even users like the first half of the catalogue, odd users the second.
    u = np.repeat(np.arange(N_USERS), 15)
    half = N_ITEMS // 2
    i = np.array([rng.choice(half, 15, replace=False) + half * (user % 2) for user in range(N_USERS)]).reshape(-1)
    ts = 880_000_000 + np.arange(len(u)) * 60
    ts[5::7] = ts[4::7][: len(ts[5::7])]  # ties: same-second interactions
    return Interactions(
        user_ids=users["user_id"].to_numpy(dtype=object),
        item_ids=items["item_id"].to_numpy(dtype=object),
        users=users,
        items=items,
        user_idx=u.astype(np.int64),
        item_idx=i.astype(np.int64),
        timestamps=ts.astype(np.int64),
        ratings=rng.integers(1, 6, len(u)).astype(np.float32),
    )


def _check_scores(scores: np.ndarray, n_users: int) -> None:
    assert scores.shape == (n_users, N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()


# --- two-tower ----------------------------------------------------------------------------------------------------


def test_sequence_examples_use_only_strictly_earlier_items(data: Interactions) -> None:
    ex = sequence_examples(data, max_len=5)
    assert ex.history.shape == (len(data), 5)
    for row in range(0, len(data), 11):
        u, t = ex.users[row], ex.timestamps[row]
        earlier = data.timestamps[(data.user_idx == u) & (data.timestamps < t)]
        assert ex.lengths[row] == min(len(earlier), 5)
        assert (ex.history[row, ex.lengths[row] :] == -1).all()
    hist, lengths = latest_histories(data, 5)
    assert hist.shape == (N_USERS, 5) and (lengths == 5).all()


@pytest.mark.parametrize("encoder", ["mean", "gru", "lstm", "transformer"])
def test_two_tower_trains_exports_and_matches_onnx(data: Interactions, encoder: str, tmp_path: Path) -> None:
    config = TwoTowerConfig(
        dim=8, user_dim=8, side_dim=4, hidden=(16,), encoder=encoder, history_len=6, epochs=2, batch_size=64,
        random_negatives=16, title_buckets=64,
    )  # fmt: skip
    ctx = LocalContext()
    model = train_two_tower(data, config, ctx)
    assert [h["epoch"] for h in ctx.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and h["samples_per_s"] > 0 for h in ctx.history)
    items = item_embeddings(model)
    users = user_vectors(model, data)
    assert items.shape == (N_ITEMS, 8) and users.shape == (N_USERS, 8) and items.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)

    path = export_query_onnx(model, tmp_path / "query.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(QUERY_INPUTS)
    hist, lengths = latest_histories(data.subset(np.arange(len(data)) % 3 == 0), 6)
    lengths[0] = 0  # a user without history
    for rows in (np.array([3]), np.arange(N_USERS)):
        inputs = {
            "user": rows.astype(np.int64),
            "demographics": model.demographics[torch.from_numpy(rows)].numpy(),
            "context": np.tile(np.array([[5, 2, 0]], dtype=np.int64), (len(rows), 1)),
            "history": hist[rows],
            "history_length": lengths[rows],
        }
        with torch.no_grad():
            expected = model.query(*(torch.from_numpy(inputs[n]) for n in QUERY_INPUTS)).numpy()
        (got,) = session.run(None, inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_two_tower_gives_an_unseen_item_a_content_embedding(data: Interactions) -> None:
    config = TwoTowerConfig(dim=8, user_dim=8, side_dim=4, hidden=(16,), history_len=6, epochs=1, title_buckets=64)
    model = train_two_tower(data, config)
    cold = cold_item_embeddings(model, ["Star Night Returns (1999)", "???"], [1999, 0], [["Action", "Sci-Fi"], []])
    assert cold.shape == (2, 8) and np.isfinite(cold).all()
    assert not np.allclose(cold[0], cold[1])
    # A catalogue item's content alone gives the same vector as the tower with its id unknown.
    row = 3
    item = data.items.iloc[row]
    same = cold_item_embeddings(model, [item["title"]], [int(item["year"])], [list(item["genres"])])
    with torch.no_grad():
        tower = model.item
        expected = tower.encode(
            torch.zeros(1, dtype=torch.int64), tower.genres[[row]], tower.years[[row]], tower.titles[[row]]
        )
    np.testing.assert_allclose(same, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_two_tower_recommender_scores_all_items(data: Interactions) -> None:
    rec = TwoTowerRecommender(TwoTowerConfig(dim=8, user_dim=8, side_dim=4, hidden=(), history_len=4, epochs=1))
    rec.fit(data)
    _check_scores(rec.score(np.array([0, 5, 7])), 3)


# --- rankers ------------------------------------------------------------------------------------------------------


RANKERS = [
    ("dlrm", lambda cards, g: DlrmModule(cards, g, DlrmConfig(embedding_dim=8, bottom=(8,), top=(16,)))),
    ("wide_deep", lambda cards, g: WideDeepModule(cards, g, WideDeepConfig(embedding_dim=8, hidden=(16,)))),
]


@pytest.mark.parametrize(("name", "make"), RANKERS)
def test_ranker_exports_to_the_served_onnx_interface(
    data: Interactions, name: str, make: Callable[[list[int], int], nn.Module], tmp_path: Path
) -> None:
    features = build_ranker_features(data)
    module = make(features.contract.cardinalities(), len(features.contract.genres)).eval()
    with torch.no_grad():  # non-trivial wide weights, so that the hashed crosses are exercised
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    backend = InProcessBackend(export_onnx(module, features.contract, tmp_path / f"{name}.onnx"), features.contract)
    rng = np.random.default_rng(1)
    for n in (1, 7, 600):
        batch = features.encode(rng.integers(0, N_USERS, n), rng.integers(0, N_ITEMS, n))
        batch.sparse[0, 0] = 0  # an unknown user
        with torch.no_grad():
            logits = module(*(torch.from_numpy(a) for a in (batch.sparse, batch.genres, batch.dense)))
        assert logits.shape == (n,)
        np.testing.assert_allclose(backend.run(batch), torch.sigmoid(logits).numpy(), rtol=1e-5, atol=1e-6)


def test_ranker_examples_and_training(data: Interactions) -> None:
    features = build_ranker_features(data)
    pool = top_unseen(np.random.default_rng(0).random((N_USERS, N_ITEMS)), data, np.arange(N_USERS), 10)
    seen = {(u, i) for u, i in zip(data.user_idx, data.item_idx, strict=True)}
    assert not any((u, i) in seen for u in range(N_USERS) for i in pool[u])
    sampling = NegativeSampling(negatives=4, hard_fraction=0.5, hard_pool=10)
    batch, labels = ranker_examples(features, data, pool, sampling, seed=0)
    assert len(labels) == 5 * len(data) and labels.sum() == len(data)
    assert batch.sparse.shape == (len(labels), 7)
    cards = features.contract.cardinalities()
    ctx = LocalContext()
    dlrm = train_dlrm(batch, labels, cards, DlrmConfig(embedding_dim=8, bottom=(8,), top=(16,), epochs=2), ctx)
    assert len(ctx.history) == 2 and ctx.history[1]["loss"] < ctx.history[0]["loss"]
    wd = train_wide_deep(batch, labels, cards, WideDeepConfig(embedding_dim=8, hidden=(16,), epochs=1))
    for module in (dlrm, wd):
        with torch.no_grad():
            out = module(*(torch.from_numpy(a) for a in (batch.sparse[:5], batch.genres[:5], batch.dense[:5])))
        assert out.shape == (5,) and torch.isfinite(out).all()


def test_ranker_examples_show_some_users_as_new_users(data: Interactions) -> None:
    features = build_ranker_features(data)
    contract = features.contract
    sparse, dense = rf.encode_user(contract, "no-such-user", 0, "", "", 0, 0.0)  # how serving encodes one
    expected = (dense[0] - np.asarray(contract.dense_mean[:2])) / np.asarray(contract.dense_std[:2])
    sampling = NegativeSampling(negatives=2, new_user_dropout=1.0, new_user_window=3)
    batch, _ = ranker_examples(features, data, None, sampling, 0)
    assert sparse[0, 0] == 0
    shown_new = batch.sparse[:, 0] == 0
    # Each user's 3 earliest interactions (and their negatives) are shown as a new user's: the unknown-id slot
    # gets trained on what people pick first.
    earliest = pd.DataFrame({"u": data.user_idx, "t": data.timestamps}).groupby("u")["t"].rank(method="first") <= 3
    np.testing.assert_array_equal(shown_new[: len(data)], earliest.to_numpy())
    np.testing.assert_array_equal(shown_new[len(data) :], np.repeat(earliest.to_numpy(), 2))
    new_rows = np.broadcast_to(expected, (shown_new.sum(), 2))
    np.testing.assert_allclose(batch.dense[shown_new][:, :2], new_rows, rtol=1e-5)
    kept, _ = ranker_examples(features, data, None, NegativeSampling(negatives=2, new_user_dropout=0.0), 0)
    assert (kept.sparse[:, 0] > 0).all()


def test_ranker_vocabulary_leaves_users_without_interactions_unknown(data: Interactions) -> None:
    active = np.unique(data.user_idx[data.user_idx != 0])
    without_user_0 = data.subset(data.user_idx != 0)
    features = build_ranker_features(without_user_0)
    assert features.user_sparse[0, 0] == 0 and (features.user_sparse[active, 0] > 0).all()


@pytest.mark.parametrize("objective", ["implicit", "rating"])
def test_ranker_recommenders_rank_the_retrievers_candidates(data: Interactions, objective: str) -> None:
    sampling = NegativeSampling(hard_pool=10)
    retriever = PopularityRecommender()
    retriever.fit(data)
    dlrm_config = DlrmConfig(embedding_dim=8, bottom=(8,), top=(16,), epochs=1, objective=objective, sampling=sampling)
    wd_config = WideDeepConfig(embedding_dim=8, hidden=(16,), epochs=1, objective=objective, sampling=sampling)
    dlrm = DlrmRecommender(dlrm_config, retriever, n_candidates=15, fit_retriever=False)
    wd = WideDeepRecommender(wd_config, retriever, n_candidates=15)
    for rec in (dlrm, wd):
        rec.fit(data)
        scores = rec.score(np.array([1, 2]))
        _check_scores(scores, 2)
        assert ((scores > rec.NON_CANDIDATE).sum(axis=1) == 15).all()
        if objective == "rating":
            pred = rec.predict_ratings(np.array([0, 1, 2]), np.array([5, 6, 7]))
            assert pred.shape == (3,) and ((pred >= 1) & (pred <= 5)).all()
        else:
            with pytest.raises(RuntimeError):
                rec.predict_ratings(np.array([0]), np.array([0]))


# --- other models -------------------------------------------------------------------------------------------------


def test_lightgcn_adjacency_and_embeddings(data: Interactions) -> None:
    adj = normalized_adjacency(data.user_idx, data.item_idx, N_USERS, N_ITEMS).to_dense()
    assert torch.allclose(adj, adj.T)
    assert adj[:N_USERS, :N_USERS].abs().sum() == 0
    ctx = LocalContext()
    model = train_lightgcn(data, LightGcnConfig(dim=8, layers=2, epochs=2, batch_size=128), ctx)
    users, items = model.export()
    assert users.shape == (N_USERS, 8) and items.shape == (N_ITEMS, 8)
    assert len(ctx.history) == 2


@pytest.mark.parametrize(
    "make",
    [
        PopularityRecommender,
        lambda: ItemKnnRecommender(ItemKnnConfig(neighbours=5)),
        lambda: BprMfRecommender(MfConfig(dim=8, epochs=2)),
        lambda: LightGcnRecommender(LightGcnConfig(dim=8, layers=2, epochs=1)),
        lambda: NcfRecommender(NcfConfig(gmf_dim=8, mlp_dim=8, hidden=(16, 8), epochs=1)),
        lambda: MultVaeRecommender(MultVaeConfig(hidden=(16,), latent=8, epochs=2)),
        lambda: SequenceRecommender(SequenceConfig(dim=8, history_len=5, epochs=1)),
        lambda: SequenceRecommender(SequenceConfig(kind="lstm", dim=8, history_len=5, epochs=1)),
    ],
)
def test_recommenders_fit_and_score(data: Interactions, make: Callable[[], Recommender]) -> None:
    rec = make()
    assert isinstance(rec.name, str) and rec.name
    rec.fit(data, None)
    _check_scores(rec.score(np.array([0, 3, 4])), 3)


def test_item_knn_learns_the_two_tastes(data: Interactions) -> None:
    rec = ItemKnnRecommender(ItemKnnConfig(neighbours=10))
    rec.fit(data)
    top = np.argsort(-rec.score(np.array([0, 1])), axis=1)[:, :5]
    assert (top[0] < N_ITEMS // 2).all() and (top[1] >= N_ITEMS // 2).all()


def test_segments(data: Interactions) -> None:
    vectors = np.random.default_rng(0).normal(size=(N_USERS, 4)).astype(np.float32)
    vectors[::2] += 5.0  # two well-separated groups
    seg = user_segments(vectors, data, SegmentConfig(n_segments=2, top_items=10))
    assert seg.assignments.shape == (N_USERS,) and seg.centroids.shape == (2, 4)
    assert seg.popular_items.shape == (2, 10) and seg.sizes.sum() == N_USERS
    assert len(set(seg.assignments[::2])) == 1 and len(set(seg.assignments[1::2])) == 1
    np.testing.assert_array_equal(seg.assign(vectors), seg.assignments)
    even = seg.assignments[0]
    assert (seg.popular_items[even] < N_ITEMS // 2).all()  # even users like the first half of the catalogue


def test_ease_closed_form_matches_the_definition_and_blocks_of_users(data: Interactions) -> None:
    from training.models.autoencoder import EaseConfig, EaseRecommender, ease_weights

    x = data.user_item_matrix().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 10.0 * np.eye(data.n_items))
    expected = np.eye(data.n_items) - p / np.diag(p)[None, :]
    got = ease_weights(data, EaseConfig(l2=10.0, chunk_users=7))  # several blocks of users
    assert np.allclose(got, expected, atol=1e-4) and np.allclose(np.diag(got), 0.0)
    model = EaseRecommender(EaseConfig(l2=10.0))
    model.fit(data)
    _check_scores(model.score(np.array([0, 1])), 2)


def test_user_weighting_enters_the_gram_matrix_as_inverse_user_frequency(data: Interactions) -> None:
    from training.models.autoencoder import EaseConfig, ease_weights

    position = np.arange(len(data)) % 15
    data = data.subset(position < 3 + data.user_idx % 12)  # users with 3 to 14 items
    x = data.user_item_matrix().astype(np.float64)
    n_u = x.sum(1)
    assert len(np.unique(n_u)) > 5
    w = np.where(n_u > 0, np.maximum(n_u, 1) ** -0.5, 0.0)
    w *= n_u.sum() / (w * n_u).sum()  # the trace of XᵀX is kept, so lambda means the same
    gram = x.T @ (w[:, None] * x)
    assert np.isclose(np.trace(gram), n_u.sum())
    p, l2 = 0.5, 10.0
    got = ease_weights(data, EaseConfig(l2=l2, dropout=p, user_weight_exponent=0.5, chunk_users=7))
    penalty = np.diag(p / (1 - p) * np.diag(gram) + l2)
    assert np.allclose((gram + penalty) @ got.astype(np.float64), gram, atol=1e-3)
    unweighted = ease_weights(data, EaseConfig(l2=l2, dropout=p))
    assert not np.allclose(got, unweighted, atol=1e-3)
    with pytest.raises(ValueError, match="user_weight_exponent"):
        ease_weights(data, EaseConfig(user_weight_exponent=-1.0))


def test_dlae_is_the_least_squares_fit_under_dropout_noise(data: Interactions) -> None:
    from training.models.autoencoder import EaseConfig, ease_weights

    x = data.user_item_matrix().astype(np.float64)
    gram = x.T @ x
    p, l2 = 0.5, 10.0
    got = ease_weights(data, EaseConfig(l2=l2, dropout=p, chunk_users=7)).astype(np.float64)
    # The closed form's stationarity condition: (G + diag(p/(1-p) diag(G) + l2)) B = G.
    penalty = np.diag(p / (1 - p) * np.diag(gram) + l2)
    assert np.allclose((gram + penalty) @ got, gram, atol=1e-3)

    # Expected loss over dropout masks, E||X - (M∘X/(1-p)) B||² + l2||B||², is minimal at B: a small step
    # in any direction raises it.
    def loss(b: np.ndarray) -> float:
        recon = np.sum((x - x @ b) ** 2) + p / (1 - p) * np.sum(np.diag(gram)[:, None] * b**2)
        return float(recon + l2 * np.sum(b**2))

    step = np.random.default_rng(0).normal(size=got.shape) * 1e-3
    assert loss(got) < loss(got + step) and loss(got) < loss(got - step)
    with pytest.raises(ValueError, match="dropout"):
        ease_weights(data, EaseConfig(dropout=1.0))
