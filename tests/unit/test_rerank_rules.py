"""Rerank core: DPP, business rules, graph affinity and the list guarantees (no duplicates, full length,
deterministic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.rerank.diversity import dpp
from services.rerank.reranker import DiversityMethod, GraphEmbeddings, Reranker
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
    out = r.rerank(ids, scores, [], count, diversity, True, [], **kw)
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
