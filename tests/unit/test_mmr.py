import numpy as np

from services.rerank.diversity import mmr


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_zero_diversity_keeps_the_ranking_order() -> None:
    rng = np.random.default_rng(0)
    rel = rng.random(50)
    picks, _ = mmr(rel, _unit(rng.normal(size=(50, 8))), 10, 0.0)
    assert picks.tolist() == np.argsort(-rel, kind="stable")[:10].tolist()


def test_diversity_skips_near_duplicates() -> None:
    # Items 0 and 1 are the same direction; 2 is orthogonal and slightly less relevant.
    emb = _unit(np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]]))
    rel = np.array([1.0, 0.95, 0.9])
    assert mmr(rel, emb, 2, 0.0)[0].tolist() == [0, 1]
    assert mmr(rel, emb, 2, 0.5)[0].tolist() == [0, 2]


def test_picks_are_unique_deterministic_and_honour_count() -> None:
    rng = np.random.default_rng(1)
    rel, emb = rng.random(300), _unit(rng.normal(size=(300, 16)))
    first, _ = mmr(rel, emb, 20, 0.7)
    second, _ = mmr(rel, emb, 20, 0.7)
    assert len(first) == 20 and len(set(first.tolist())) == 20
    assert first.tolist() == second.tolist()
    values = mmr(rel, emb, 20, 0.7)[1]
    assert (np.diff(values) <= 1e-9).all(), "objective values descend with the position"
    assert len(mmr(rel[:5], emb[:5], 20, 0.3)[0]) == 5


def test_constant_relevance_and_empty_input() -> None:
    emb = _unit(np.eye(4))
    assert len(mmr(np.ones(4), emb, 3, 0.5)[0]) == 3
    assert len(mmr(np.empty(0), np.empty((0, 4)), 3, 0.5)[0]) == 0
