"""The offline evaluation harness: metrics against hand-computed values, splits, split files, the report and
small end-to-end runs on synthetic data."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.interactions import Interactions, load_offline
from training.data.offline import write_offline_sources
from training.data.synthetic import generate
from training.evaluation import cli, harness
from training.evaluation import metrics as m
from training.evaluation.context import QUICK_EPOCHS, EvalConfig, EvalContext
from training.evaluation.report import BIAS_PNG, COMPARISON_PNG, MARKDOWN_NAME, write_report
from training.evaluation.splits import (
    SplitError,
    held_out_count,
    load_split_dir,
    random_split,
    temporal_split,
)
from training.models.baselines import PopularityRecommender
from training.models.registry import MODELS, ModelSpec, UnknownModel, lookup, trainable


@pytest.fixture(scope="module")
def offline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offline")
    # More than 100 items: the pipeline draws hard negatives from the top 100 unseen items.
    write_offline_sources(generate(120, 130, interactions_per_user=18, seed=5), out)
    return out


@pytest.fixture(scope="module")
def data(offline_dir: Path) -> Interactions:
    return load_offline(offline_dir)


# --- metrics ---------------------------------------------------------------------------------------------


def test_accuracy_metrics_match_hand_computed_values() -> None:
    topk = np.array([[1, 2, 3, 4], [7, 8, 9, -1], [5, 6, 0, 1]])
    truth = m.Truth.from_lists([[2, 5], [9], [3]])
    u = m.accuracy_per_user(topk, truth, 4)
    # user 0: one hit at rank 2 of 2 relevant
    assert u["precision"][0] == pytest.approx(0.25)
    assert u["recall"][0] == pytest.approx(0.5)
    assert u["f1"][0] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    assert u["map"][0] == pytest.approx(0.5 * 0.5)  # P@2 / min(|R|, k)
    assert u["ndcg"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert u["mrr"][0] == pytest.approx(0.5)
    assert u["hit_rate"][0] == 1.0
    # user 1: the only relevant item at rank 3 (padding is never relevant)
    assert u["recall"][1] == pytest.approx(1.0)
    assert u["map"][1] == pytest.approx(1 / 3)
    assert u["ndcg"][1] == pytest.approx(0.5)
    assert u["mrr"][1] == pytest.approx(1 / 3)
    # user 2: no hit
    assert all(u[name][2] == 0.0 for name in m.ACCURACY_METRICS)
    means = m.accuracy(topk, truth, [4])
    assert means["ndcg@4"] == pytest.approx(u["ndcg"].mean())
    assert means["hit_rate@4"] == pytest.approx(2 / 3)


def test_ndcg_at_k_cuts_the_list_and_the_ideal() -> None:
    topk = np.array([[0, 1, 2]])
    truth = m.Truth.from_lists([[0, 2, 5]])
    at1 = m.accuracy_per_user(topk, truth, 1)
    assert at1["ndcg"][0] == pytest.approx(1.0)
    assert at1["precision"][0] == pytest.approx(1.0)
    assert at1["recall"][0] == pytest.approx(1 / 3)
    at3 = m.accuracy_per_user(topk, truth, 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert at3["ndcg"][0] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert at3["map"][0] == pytest.approx((1 + 2 / 3) / 3)


def test_users_without_relevant_items_are_skipped_in_means() -> None:
    topk = np.array([[0, 1], [0, 1]])
    truth = m.Truth.from_lists([[0], []])
    assert m.accuracy(topk, truth, [2])["recall@2"] == pytest.approx(1.0)


def test_beyond_accuracy_metrics_match_hand_computed_values() -> None:
    assert m.gini_index(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert m.gini_index(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d = 1 - 1 / math.sqrt(2)
    assert m.intra_list_distance(np.array([[0, 1, 2]]), features)[0] == pytest.approx((1 + 2 * d) / 3)
    assert m.intra_list_distance(np.array([[0, 2, -1]]), features)[0] == pytest.approx(d)
    assert np.isnan(m.intra_list_distance(np.array([[0, -1, -1]]), features)[0])
    popularity = np.array([3, 1, 0])
    info = m.self_information(popularity)
    assert info == pytest.approx(-np.log2(np.array([4, 2, 1]) / 7))
    out = m.beyond_accuracy(np.array([[0, 1], [0, 2]]), [2], 3, popularity, features)
    assert out["coverage@2"] == pytest.approx(1.0)
    assert out["avg_popularity@2"] == pytest.approx((2 + 1.5) / 2)
    assert out["novelty@2"] == pytest.approx(((info[0] + info[1]) / 2 + (info[0] + info[2]) / 2) / 2)
    assert out["gini@2"] == pytest.approx(m.gini_index(np.array([2, 1, 1])))
    assert m.beyond_accuracy(np.array([[0, 1]]), [2], 5, np.ones(5), np.eye(5))["coverage@2"] == pytest.approx(0.4)

    # Miscalibration: items 0 (genre A), 1 (genre B), 2 (A and B); user 0's history is all A, user 1's is mixed.
    mix = m.genre_mix(features)
    assert mix[2] == pytest.approx([0.5, 0.5]) and mix[0] == pytest.approx([1.0, 0.0])
    users = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])  # the third user has no genre history: not counted
    lists = np.array([[0, -1], [0, 1], [1, 2]])
    got = m.miscalibration(lists, [2], users, mix)["miscalibration@2"]
    # user 0: q = (1, 0) -> KL 0; user 1: q = (0.5, 0.5) -> KL 0
    assert got == pytest.approx(0.0, abs=1e-12)
    far = m.miscalibration(np.array([[1, -1]]), [1], np.array([[1.0, 0.0]]), mix)["miscalibration@1"]
    assert far == pytest.approx(-math.log(0.01))  # q~ = 0.99 * 0 + 0.01 * 1 on genre A


def test_rating_errors() -> None:
    out = m.rating_errors(np.array([3.0, 4.0, 1.0]), np.array([4.0, 2.0, np.nan]))
    assert out["rmse"] == pytest.approx(math.sqrt(2.5))
    assert out["mae"] == pytest.approx(1.5)


def test_top_k_excludes_orders_and_pads() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    best = m.top_k(scores, 3, np.array([0, 1, 1, 1]), np.array([3, 3, 2, 1]))
    assert best.tolist() == [[1, 2, 0], [0, -1, -1]]
    assert m.top_k(scores, 6, np.array([], dtype=int), np.array([], dtype=int))[1].tolist() == [3, 2, 1, 0, -1, -1]
    ties = m.top_k(np.zeros((1, 4), dtype=np.float32), 2, np.array([], dtype=int), np.array([], dtype=int))
    assert ties.tolist() == [[0, 1]]


# --- splits ----------------------------------------------------------------------------------------------


def _pairs(part: Interactions) -> set[tuple[int, int]]:
    return set(zip(part.user_idx.tolist(), part.item_idx.tolist(), strict=True))


def test_random_split_is_disjoint_per_user_and_deterministic(data: Interactions) -> None:
    split = random_split(data, seed=3)
    train, valid, test = _pairs(split.train), _pairs(split.valid), _pairs(split.test)
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert len(train) + len(valid) + len(test) == len(data)
    n = np.bincount(data.user_idx, minlength=data.n_users)
    n_test = np.bincount(split.test.user_idx, minlength=data.n_users)
    n_valid = np.bincount(split.valid.user_idx, minlength=data.n_users)
    assert (n_test == held_out_count(n, 0.1)).all()
    assert (n_valid == held_out_count(n, 0.1)).all()
    big = n >= 10
    assert np.abs(n_test[big] / n[big] - 0.1).max() <= 0.05
    again = random_split(data, seed=3)
    assert np.array_equal(again.test.item_idx, split.test.item_idx)
    assert not np.array_equal(random_split(data, seed=4).test.item_idx, split.test.item_idx)


def test_held_out_counts_round_and_keep_small_users_in_train() -> None:
    assert held_out_count(np.array([1, 2, 3, 4, 15, 20, 26]), 0.1).tolist() == [0, 0, 1, 1, 2, 2, 3]


def test_temporal_split_respects_time(data: Interactions) -> None:
    split = temporal_split(data)
    assert split.train.timestamps.max() <= split.valid.timestamps.min()
    assert split.valid.timestamps.max() <= split.test.timestamps.min()
    assert len(split.train) == round(0.8 * len(data))
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)


def _write_split(directory: Path, split_parts: dict[str, Interactions]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, part in split_parts.items():
        pd.DataFrame(
            {
                "user_id": part.user_ids[part.user_idx],
                "item_id": part.item_ids[part.item_idx],
                "timestamp": part.timestamps,
            }
        ).to_csv(directory / f"{name}.csv", index=False)


def test_split_dir_round_trips_and_reads_ratings(data: Interactions, tmp_path: Path) -> None:
    split = random_split(data, seed=1)
    _write_split(tmp_path, {"train": split.train, "valid": split.valid, "test": split.test})
    loaded = load_split_dir(tmp_path, data)
    assert loaded.kind == "files"
    for a, b in ((loaded.train, split.train), (loaded.valid, split.valid), (loaded.test, split.test)):
        assert _pairs(a) == _pairs(b)
        order_a = np.lexsort((a.item_idx, a.user_idx))
        order_b = np.lexsort((b.item_idx, b.user_idx))
        assert np.array_equal(a.ratings[order_a], b.ratings[order_b])
        assert np.array_equal(a.timestamps[order_a], b.timestamps[order_b])
    assert not loaded.notes


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "valid.csv").unlink(), "valid.csv is missing"),
        (lambda d: (d / "test.csv").write_text("user,item,timestamp\n1,2,3\n"), "lacks column(s) user_id, item_id"),
        (lambda d: (d / "test.csv").write_text("user_id,item_id,timestamp\n99999,1,3\n"), "users unknown"),
        (lambda d: (d / "test.csv").write_text("user_id,item_id,timestamp\n1,1,yesterday-ish\n"), "timestamp"),
        (lambda d: (d / "test.csv").write_text(""), "not a readable CSV"),
        (lambda d: (d / "test.csv").write_text((d / "train.csv").read_text()), "share"),
        (lambda d: (d / "test.csv").write_text("user_id,item_id,timestamp\n1,1,3\n1,1,4\n"), "appears 2 times"),
        (lambda d: (d / "test.csv").write_text("user_id,item_id,timestamp\n"), "holds no interactions"),
    ],
)
def test_bad_split_dirs_fail_clearly(data: Interactions, tmp_path: Path, damage: object, message: str) -> None:
    split = random_split(data, seed=1)
    _write_split(tmp_path, {"train": split.train, "valid": split.valid, "test": split.test})
    damage(tmp_path)  # type: ignore[operator]
    with pytest.raises(SplitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_split_dir(tmp_path, data)


# --- the model table and the harness's choice of models ---------------------------------------------------


@dataclass(frozen=True)
class _Config:
    epochs: int = 30
    seed: int = 0
    lr: float = 0.1


def test_specs_seed_their_configs_and_cap_epochs_when_quick() -> None:
    spec = ModelSpec("m", _Config(), PopularityRecommender)
    assert spec.configured(seed=7, max_epochs=QUICK_EPOCHS) == _Config(epochs=QUICK_EPOCHS, seed=7)
    assert spec.configured(seed=1).epochs == 30
    assert ModelSpec("p", None, PopularityRecommender).configured(seed=2, max_epochs=QUICK_EPOCHS) is None


class _FakeRetriever(PopularityRecommender):
    name = "fake_retriever"

    def __init__(self, config: _Config | None = None) -> None:
        super().__init__()
        self.config = config


class _FakeRanker:
    name = "fake_ranker"

    def __init__(self, config: _Config, retriever: _FakeRetriever | None = None, fit_retriever: bool = True) -> None:
        self.retriever, self.config, self.fit_retriever = retriever, config, fit_retriever

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None: ...

    def score(self, users: np.ndarray) -> np.ndarray:
        assert self.retriever is not None
        return self.retriever.score(users)


_TABLE = {
    "r": ModelSpec("r", _Config(), _FakeRetriever),
    "k": ModelSpec("k", _Config(lr=0.5), _FakeRanker, retriever="r"),
    "off": ModelSpec("off", None, PopularityRecommender, evaluated_by_default=False),
    "untested": ModelSpec("untested", _Config(), None),
}


def test_harness_builds_variants_and_shares_fitted_retrievers() -> None:
    assert harness.resolve(None, _TABLE) == ["r", "k", harness.PIPELINE]
    assert harness.resolve(["pipeline", "k", "r", "off"], _TABLE) == ["r", "off", "k", "pipeline"]
    fresh = harness.create("k", EvalConfig(seed=3, quick=True), None, _TABLE)
    assert isinstance(fresh, _FakeRanker) and isinstance(fresh.retriever, _FakeRetriever)
    assert fresh.config == _Config(epochs=QUICK_EPOCHS, seed=3, lr=0.5)
    assert fresh.fit_retriever and fresh.retriever.config == _Config(epochs=QUICK_EPOCHS, seed=3)
    fitted = _FakeRetriever()
    shared = harness.create("k", EvalConfig(seed=3), {"r": fitted}, _TABLE)
    assert isinstance(shared, _FakeRanker)
    assert shared.retriever is fitted and not shared.fit_retriever and shared.config.epochs == 30


def test_harness_rejects_unknown_names_listing_the_valid_ones() -> None:
    assert harness.available(_TABLE) == ["k", "off", "r", harness.PIPELINE]
    with pytest.raises(UnknownModel, match="nope; choose from: k, off, r, pipeline"):
        harness.resolve(["r", "nope"], _TABLE)
    with pytest.raises(UnknownModel, match="untested"):
        harness.resolve(["untested"], _TABLE)


def test_one_table_for_training_and_evaluation() -> None:
    """Every trainable model trains through the table's trainer; every default model of the harness is in it,
    ranker variants over the two-tower retriever."""
    assert trainable() == [n for n, s in MODELS.items() if s.trainer is not None]
    assert {"bpr_mf", "two_tower", "lightgcn", "ncf", "mult_vae", "gru4rec", "mlp_ranker", "dlrm", "wide_deep"} <= set(
        trainable()
    )
    assert {n for n in harness.resolve(None) if n != harness.PIPELINE} == {
        n for n, s in MODELS.items() if s.recommender is not None and s.evaluated_by_default
    }
    assert MODELS["dlrm_rating"].config.objective == "rating" and MODELS["dlrm_rating"].retriever == "two_tower"
    with pytest.raises(UnknownModel, match="choose one of: bpr_mf, "):
        lookup("two-tower", trainable())


# --- report and end to end -------------------------------------------------------------------------------


def test_harness_with_the_popularity_baseline_end_to_end(data: Interactions, tmp_path: Path) -> None:
    split = random_split(data, seed=0)
    results = harness.run(split, ["popularity"], EvalConfig(seed=0), harness.describe_data(data, tmp_path))
    entry = results["models"]["popularity"]
    assert 0.0 < entry["ndcg@10"] <= 1.0 and 0.0 < entry["recall@20"] <= 1.0
    assert entry["coverage@10"] < 0.2  # the same list for everyone
    assert {"cold_users", "cold_items", "timings"} <= set(entry)
    # Popularity recommends the top unseen items: check one user by hand.
    ctx = EvalContext.build(split, EvalConfig())
    model = PopularityRecommender()
    model.fit(split.train)
    topk = harness.recommend_all(model, ctx)
    u = int(ctx.users[0])
    seen = set(split.train.item_idx[split.train.user_idx == u]) | set(split.valid.item_idx[split.valid.user_idx == u])
    pop = split.train.item_popularity()
    expected = [i for i in np.lexsort((np.arange(len(pop)), -pop)) if i not in seen][:20]
    assert topk[0].tolist() == expected

    path = write_report(results, tmp_path / "report")
    doc = json.loads(path.read_text())
    assert doc["models"]["popularity"]["ndcg@10"] == pytest.approx(entry["ndcg@10"])
    assert doc["protocol"]["split"]["kind"] == "random" and doc["machine"]["cpu_count"] >= 1
    md = (tmp_path / "report" / MARKDOWN_NAME).read_text()
    assert "| popularity |" in md
    for png in (COMPARISON_PNG, BIAS_PNG):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_writes_nan_as_null(tmp_path: Path) -> None:
    results = {"protocol": {"ks": [10]}, "models": {"x": {"ndcg@10": float("nan"), "recall@10": np.float32(0.5)}}}
    doc = json.loads(write_report(results, tmp_path).read_text())
    assert doc["models"]["x"] == {"ndcg@10": None, "recall@10": 0.5}


def test_cli_runs_and_prints_the_json_path(
    offline_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["--offline-dir", str(offline_dir), "--models", "popularity", "--out", str(out), "--split", "temporal"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "metrics.json")
    assert json.loads((out / "metrics.json").read_text())["protocol"]["split"]["kind"] == "temporal"

    assert cli.main(["--offline-dir", str(offline_dir), "--split-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().out
    assert cli.main(["--offline-dir", str(offline_dir), "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().out


def test_pipeline_through_the_service_cores(offline_dir: Path, tmp_path: Path) -> None:
    """The served pipeline, quick: trained on the train part, run through Retriever, Encoder and Reranker."""
    data = load_offline(offline_dir)
    split = random_split(data, seed=0)
    results = harness.run(split, ["pipeline"], EvalConfig(seed=0, quick=True), harness.describe_data(data, tmp_path))
    entry = results["models"]["pipeline"]
    assert "error" not in entry, entry.get("error")
    assert 0.0 <= entry["ndcg@10"] <= 1.0
    stages = entry["stages"]
    # Every item is a candidate in this small catalogue, so retrieval recall@500 is complete.
    assert stages["retrieval"]["recall@500"] == pytest.approx(1.0)
    assert stages["retrieval"]["recall@10"] <= stages["retrieval"]["recall@100"]
    # Diversity 0 keeps the ranking order (unless rerank blends in a graph component's affinity).
    if "graph" not in entry["settings"]["bundle_components"]:
        assert stages["rerank_diversity_0"]["ndcg@10"] == pytest.approx(stages["ranking"]["ndcg@10"])
    assert entry["settings"]["candidate_count"] == 500
