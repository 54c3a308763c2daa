"""Rerank core: DPP, business rules, graph affinity and the list guarantees (no duplicates, full length,
deterministic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.rerank.diversity import calibrated, dpp
from services.rerank.explain import EXPLORATION_REASON, PINNED_REASON
from services.rerank.query import DiversityMethod, RerankQuery
from services.rerank.reranker import GraphEmbeddings, Reranker
from services.rerank.rules import BusinessRules, RulesError, compile_rules

N = 40
GENRES = [["Horror"] if i % 2 == 0 else ["Comedy"] for i in range(N)]


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _reranker(rules: BusinessRules | None = None, graph: GraphEmbeddings | None = None) -> Reranker:
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(N)]
    popularity = np.arange(N)[::-1].astype(float)  # item 0 most popular
    return Reranker("v1", ids, _unit(rng.normal(size=(N, 8))), [f"t{i}" for i in ids], GENRES, popularity, rules,
                    graph)  # fmt: skip


def _run(r: Reranker, count: int = 10, diversity: float = 0.0, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    ids = [str(i) for i in range(N)]
    scores = np.linspace(1.0, 0.0, N, dtype=np.float32)  # item 0 best
    out = r.rerank(RerankQuery(ids, scores, count, diversity=diversity, explain=True, **kw))
    return [ids[p] for p in out.positions]


def test_dpp_zero_diversity_is_relevance_order_and_skips_duplicates() -> None:
    rel = np.array([1.0, 0.95, 0.9])
    emb = _unit(np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]]))
    assert dpp(rel, emb, 2, 0.0)[0].tolist() == [0, 1]
    assert dpp(rel, emb, 2, 0.5)[0].tolist() == [0, 2]


def test_dpp_unique_deterministic_full_and_descending() -> None:
    rng = np.random.default_rng(1)
    rel, emb = rng.random(500), _unit(rng.normal(size=(500, 64)))
    first, values = dpp(rel, emb, 20, 0.7)
    assert len(set(first.tolist())) == 20 and first.tolist() == dpp(rel, emb, 20, 0.7)[0].tolist()
    assert (np.diff(values) <= 0).all()


def test_dpp_picks_what_the_greedy_log_det_definition_picks() -> None:
    """Against the definition, without the incremental Cholesky: each step picks the item maximising
    (1 - lambda) * rel_i + lambda / 2 * log of its Schur complement given the picked set, under S = E Eᵀ."""
    rng = np.random.default_rng(2)
    rel, emb = rng.random(60), _unit(rng.normal(size=(60, 16)))
    lam, k = 0.6, 8
    gram = emb @ emb.T
    picked: list[int] = []
    for _ in range(k):
        best, best_value = -1, -np.inf
        for i in sorted(set(range(60)) - set(picked)):
            residual = gram[i, i]
            if picked:
                block = gram[np.ix_(picked, picked)]
                residual -= gram[i, picked] @ np.linalg.solve(block, gram[picked, i])
            value = (1 - lam) * rel[i] + lam / 2 * np.log(max(residual, 1e-10))
            if value > best_value:
                best, best_value = i, value
        picked.append(best)
    assert dpp(rel, emb, k, lam)[0].tolist() == picked


def test_deny_allow_boost_caps_pins_and_exploration() -> None:
    assert _run(_reranker(BusinessRules(deny_items=["0", "1"])))[:2] == ["2", "3"]
    assert set(_run(_reranker(BusinessRules(allow_items=["5", "9", "30"])))) == {"5", "9", "30"}
    assert _run(_reranker(BusinessRules(boosts=[{"item": "30", "factor": 10}])))[0] == "30"
    capped = _run(_reranker(BusinessRules(genre_caps={"Horror": 2})))
    assert sum(GENRES[int(i)] == ["Horror"] for i in capped) == 2 and len(capped) == 10
    pinned = _run(_reranker(BusinessRules(pins=[{"item": "20", "position": 3}])))
    assert pinned[3] == "20" and len(set(pinned)) == 10
    explored = _reranker(BusinessRules(exploration={"share": 0.2, "long_tail_quantile": 0.5}))
    out = _run(explored)
    assert sum(int(i) >= N // 2 for i in out) >= 2 and len(set(out)) == 10  # long tail = the less popular half


def test_caps_are_relaxed_rather_than_return_a_short_list() -> None:
    out = _run(_reranker(BusinessRules(genre_caps={"Horror": 1, "Comedy": 1})), count=10)
    assert len(out) == 10 and len(set(out)) == 10


@pytest.mark.parametrize("method", list(DiversityMethod))
def test_every_method_is_deterministic_and_complete(method: DiversityMethod) -> None:
    r = _reranker(BusinessRules(genre_caps={"Horror": 3}, pins=[{"item": "7", "position": 0}]))
    first = _run(r, count=15, diversity=0.5, method=method)
    assert first == _run(r, count=15, diversity=0.5, method=method)
    assert len(first) == 15 and len(set(first)) == 15 and first[0] == "7"


def test_graph_affinity_weight_one_orders_by_affinity() -> None:
    items = np.zeros((N, 2))
    items[:, 0] = np.arange(N)  # affinity grows with the item id
    graph = GraphEmbeddings({"u": 0}, np.array([[1.0, 0.0]]), items)
    r = _reranker(graph=graph)
    assert _run(r, count=3, user_id="u", graph_weight=1.0) == ["39", "38", "37"]
    assert _run(r, count=3, user_id="u", graph_weight=0.0) == ["0", "1", "2"]
    assert _run(r, count=3, user_id="unknown", graph_weight=1.0) == ["0", "1", "2"]


def test_rules_are_checked_against_the_catalogue(tmp_path: Path) -> None:
    ids, pop = [str(i) for i in range(N)], np.zeros(N)
    with pytest.raises(RulesError, match=r"items \['nope'\].*genres \['Westerns'\]"):
        compile_rules(BusinessRules(deny_items=["nope"], genre_caps={"Westerns": 1}), ids, GENRES, pop)
    bad = tmp_path / "rules.yaml"
    bad.write_text("pins:\n  - {item: '1', position: 0}\n  - {item: '2', position: 0}\n")
    with pytest.raises(RulesError, match="distinct positions"):
        BusinessRules.load(bad)
    bad.write_text("genre_caps: {Horror: 0}\n")
    with pytest.raises(RulesError, match="at least 1"):
        BusinessRules.load(bad)
    bad.write_text("boosts: [{genre: Horror, item: '1', factor: 2}]\n")
    with pytest.raises(RulesError, match="exactly one"):
        BusinessRules.load(bad)
    bad.write_text("unknown_rule: 1\n")
    with pytest.raises(RulesError, match="unknown_rule"):
        BusinessRules.load(bad)


def test_calibration_makes_the_genre_mix_follow_the_history() -> None:
    r = _reranker()
    ids = [str(i) for i in range(N)]
    horror_first = sorted(range(N), key=lambda i: (i % 2, i))  # every Horror item outranks every Comedy item
    scores = np.empty(N, dtype=np.float32)
    scores[horror_first] = np.linspace(1.0, 0.0, N)
    history = ["1", "3", "5", "0"]  # three Comedy, one Horror: the target mix is 75% Comedy

    def comedies(diversity: float, hist: list[str]) -> int:
        out = r.rerank(
            RerankQuery(ids, scores, 8, diversity=diversity, history_item_ids=hist, method=DiversityMethod.CALIBRATED)
        )
        assert len(set(out.positions.tolist())) == 8 and np.all(np.diff(out.scores) <= 0)
        return sum(int(ids[p]) % 2 for p in out.positions)

    assert comedies(0.0, history) == 0, "strength 0 keeps the ranking order"
    assert comedies(0.99, history) == 6, "6 of 8 follow the 75% Comedy history"
    assert comedies(0.99, []) == 0, "no history, nothing to calibrate to: the ranking order"
    assert 0 < comedies(0.5, history) <= comedies(0.9, history) <= 6, "weaker strengths move part of the way"


def test_calibrated_reduces_the_kl_to_the_target() -> None:
    rng = np.random.default_rng(3)
    genres = rng.random((200, 6)) ** 4
    genres /= genres.sum(axis=1, keepdims=True)
    target = np.array([0.5, 0.3, 0.2, 0.0, 0.0, 0.0])
    rel = rng.random(200)

    def kl(picks: np.ndarray) -> float:
        q = 0.99 * genres[picks].mean(axis=0) + 0.01 * target
        return float((target[:3] * np.log(target[:3] / q[:3])).sum())

    losses = [kl(calibrated(rel, genres, target, 20, s)[0]) for s in (0.0, 0.3, 0.6, 0.9)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0], losses
    assert calibrated(rel, genres, target, 20, 0.0)[0].tolist() == np.argsort(-rel, kind="stable")[:20].tolist()


def test_item_affinity_is_blended_into_the_relevance() -> None:
    r = _reranker()
    ids = [str(i) for i in range(N)]
    scores = np.linspace(1.0, 0.0, N, dtype=np.float32)  # item 0 best by ranking
    affinity = np.linspace(0.0, 1.0, N, dtype=np.float32)  # item 39 best by history affinity

    def top(weight: float, aff: np.ndarray | None = affinity) -> list[str]:
        out = r.rerank(
            RerankQuery(ids, scores, 3, user_id="u", method=DiversityMethod.MMR, affinity=aff, affinity_weight=weight)
        )
        return [ids[p] for p in out.positions]

    assert top(0.0) == ["0", "1", "2"] and top(0.5, None) == ["0", "1", "2"]
    assert top(1.0) == ["39", "38", "37"]
    assert top(0.5, np.zeros(N, dtype=np.float32)) == ["0", "1", "2"], "a flat affinity changes nothing"


def test_pinned_and_exploration_slots_say_why_they_are_there() -> None:
    ids = [str(i) for i in range(N)]
    scores = np.linspace(1.0, 0.0, N, dtype=np.float32)
    pinned = _reranker(BusinessRules(pins=[{"item": "20", "position": 3}])).rerank(
        RerankQuery(ids, scores, 10, explain=True)
    )
    assert ids[int(pinned.positions[3])] == "20" and pinned.reasons[3] == PINNED_REASON
    assert PINNED_REASON not in pinned.reasons[:3] + pinned.reasons[4:]
    explored = _reranker(BusinessRules(exploration={"share": 0.2, "long_tail_quantile": 0.5}))
    out = explored.rerank(RerankQuery(ids, scores, 10, explain=True))
    slots = [j for j, why in enumerate(out.reasons) if why == EXPLORATION_REASON]
    assert len(slots) == 2  # 20% of 10
    assert all(int(ids[int(out.positions[j])]) >= N // 2 for j in slots)  # from the less popular half
    assert all(out.reasons)
