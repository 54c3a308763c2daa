"""The ANN index: choice by size/contract/settings, and filtered search that still fills k, per index type."""

from __future__ import annotations

import numpy as np
import pytest

from artifacts.ann_index import AnnIndex, IndexSpec, NeighbourTable, choose_spec, default_index_contract
from services.candidate.settings import CandidateSettings


def clustered(n: int, dim: int = 16, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_default_is_flat_below_the_threshold_and_ivf_above() -> None:
    s = CandidateSettings()
    assert choose_spec(19_999, s).kind == "flat" and choose_spec(20_000, s).kind == "ivf"
    big = choose_spec(1_000_000, s)
    assert big.kind == "ivf" and big.params == {"nlist": 4000, "nprobe": 80}
    assert big.chosen_by == "size"
    assert default_index_contract(1_000_000, s.flat_max_items) == {"type": "ivf", "nlist": 0, "nprobe": 80}


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_item_queries_search_with_less_effort_and_still_fill_k(kind: str) -> None:
    vectors = clustered(6_000, 16)
    index = AnnIndex(vectors, choose_spec(len(vectors), CandidateSettings(index_type=kind)))
    full = index._params(50, 0, None)
    light = index._params(50, 0, None, effort=0.25)
    if kind == "ivf":
        assert (full.nprobe, light.nprobe) == (80, 20)
    else:
        assert (full.efSearch, light.efSearch) == (128, 50)  # never below k
    rows, _ = index.search(vectors[:3], 50, effort=0.25)
    assert (rows >= 0).all() and (rows[:, 0] == np.arange(3)).all()  # each item finds itself first


def test_contract_then_settings_override() -> None:
    spec = choose_spec(200_000, CandidateSettings(), {"type": "ivf", "nlist": 1024, "nprobe": 16})
    assert (spec.kind, spec.params, spec.chosen_by) == ("ivf", {"nlist": 1024, "nprobe": 16}, "contract")
    spec = choose_spec(200_000, CandidateSettings(ivf_nprobe=64), {"type": "ivf", "nlist": 1024})
    assert spec.params["nprobe"] == 64
    spec = choose_spec(200_000, CandidateSettings(index_type="hnsw", hnsw_ef_search=256), {"type": "ivf"})
    assert spec.kind == "hnsw" and spec.params["efSearch"] == 256 and spec.chosen_by == "settings"
    assert choose_spec(1_000_000, CandidateSettings(index_type="ivf")).params["nlist"] == 4000
    with pytest.raises(ValueError, match="unknown index type"):
        choose_spec(10, CandidateSettings(), {"type": "lsh"})


def test_the_contract_written_by_training_is_what_the_service_builds() -> None:
    threshold = CandidateSettings().flat_max_items
    small = choose_spec(1_682, CandidateSettings(), default_index_contract(1_682, threshold))
    assert (small.kind, small.chosen_by) == ("flat", "contract")
    big = choose_spec(1_000_000, CandidateSettings(), default_index_contract(1_000_000, threshold))
    assert big.describe() == {"type": "ivf", "nlist": 4000, "nprobe": 80, "chosen_by": "contract"}


SPECS = [
    IndexSpec("flat"),
    IndexSpec("hnsw", {"M": 16, "efConstruction": 40, "efSearch": 32}),
    IndexSpec("ivf", {"nlist": 64, "nprobe": 2}),
]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(6000)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
@pytest.mark.parametrize("share", [0.003, 0.05, 0.5])
def test_strict_filters_still_return_k_when_enough_qualify(vectors: np.ndarray, spec: IndexSpec, share: float) -> None:
    index = AnnIndex(vectors, spec)
    rng = np.random.default_rng(1)
    allowed = rng.random(len(vectors)) < share
    k = min(int(allowed.sum()), 300)
    # exact_max_rows=0: the index itself must fill k (widening, then exact), not the small-filter shortcut.
    rows, scores = index.search(vectors[:3], k, allowed, exact_max_rows=0)
    assert rows.shape == (3, k) and (rows >= 0).all()
    assert allowed[rows].all()
    for r in rows:
        assert len(set(r.tolist())) == k
    assert np.all(np.diff(scores, axis=1) <= 1e-5), "best first"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_fewer_allowed_than_k_returns_all_of_them(vectors: np.ndarray, spec: IndexSpec) -> None:
    index = AnnIndex(vectors, spec)
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[[5, 50, 500]] = True
    rows, _ = index.search(vectors[0], 100, allowed, exact_max_rows=1000)
    assert sorted(rows[0].tolist()) == [5, 50, 500]


@pytest.mark.parametrize("spec", SPECS[1:], ids=lambda s: s.kind)
def test_approximate_indexes_have_high_recall_on_clustered_data(vectors: np.ndarray, spec: IndexSpec) -> None:
    index = AnnIndex(vectors, spec)
    queries = vectors[::120] + 0.1 * np.random.default_rng(7).normal(size=(50, vectors.shape[1])).astype(np.float32)
    approx, _ = index.search(queries, 100)
    exact, _ = index.exact_search(queries, 100)
    recall = np.mean([len(np.intersect1d(a, e)) / 100 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9


def test_flat_is_exact(vectors: np.ndarray) -> None:
    index = AnnIndex(vectors, IndexSpec("flat"))
    rows, _ = index.search(vectors[:5], 50)
    exact, _ = index.exact_search(vectors[:5], 50)
    assert (rows == exact).all()


def test_a_written_index_reads_back_and_answers_as_the_one_built_here(tmp_path) -> None:
    from artifacts.ann_index import same_index

    vectors = clustered(5000, 16)
    spec = IndexSpec("hnsw", {"M": 16, "efConstruction": 40, "efSearch": 64})
    built = AnnIndex(vectors, spec)
    built.write(tmp_path / "index.faiss")
    loaded = AnnIndex(vectors, spec, built=AnnIndex.read(tmp_path / "index.faiss"))
    assert loaded.loaded and not built.loaded
    queries = vectors[:20] + 0.01
    allowed = np.ones(len(vectors), dtype=bool)
    allowed[::3] = False
    for a, b in zip(built.search(queries, 50, allowed), loaded.search(queries, 50, allowed), strict=True):
        assert np.array_equal(a, b)
    # Search-time parameters may differ; the built structure may not.
    assert same_index(
        IndexSpec("hnsw", {"M": 16, "efConstruction": 40, "efSearch": 256}),
        {"type": "hnsw", "M": 16, "efConstruction": 40},
    )
    assert not same_index(
        IndexSpec("hnsw", {"M": 32, "efConstruction": 40, "efSearch": 64}),
        {"type": "hnsw", "M": 16, "efConstruction": 40},
    )
    assert not same_index(IndexSpec("flat"), {"type": "hnsw", "M": 16})
    with pytest.raises(ValueError, match="shipped index"):
        AnnIndex(vectors[:100], spec, built=AnnIndex.read(tmp_path / "index.faiss"))


@pytest.mark.parametrize("share", [1.0, 0.5, 0.1])
def test_flat_search_matches_faiss_exhaustive_search(share: float) -> None:
    """The exact index answers with numpy (one matrix product, a partition); Faiss's own exhaustive search over
    the same vectors, restricted to the same rows, returns the same rows and scores."""
    import faiss

    vectors = clustered(3_000, 16)
    rng = np.random.default_rng(1)
    allowed = rng.random(len(vectors)) < share
    queries = vectors[rng.integers(0, len(vectors), 12)]
    index = AnnIndex(vectors, IndexSpec("flat", {}, "settings"))
    rows, scores = index.search(queries, 84, allowed if share < 1.0 else None)
    reference = faiss.IndexFlatIP(16)
    reference.add(vectors)
    params = faiss.SearchParameters()
    bitmap = np.packbits(allowed, bitorder="little")
    if share < 1.0:
        params.sel = faiss.IDSelectorBitmap(len(vectors), faiss.swig_ptr(bitmap))
    ref_scores, ref_rows = reference.search(queries, 84, params=params)
    assert rows.shape == (12, 84) and (rows >= 0).all() and allowed[rows].all()
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    for mine, theirs, s in zip(rows, ref_rows, ref_scores, strict=True):
        untied = s > s[-1] + 1e-6  # rows that tie with the 84th may differ in which one gets in
        assert set(mine[untied]) <= set(theirs) and set(theirs[untied]) <= set(mine)


def test_neighbour_table_answers_as_exact_search_or_not_at_all() -> None:
    vectors = clustered(1_500, 16)
    table = NeighbourTable.build(vectors, width=64)
    exact = AnnIndex(vectors, IndexSpec("flat"))
    assert table.rows.shape == (1_500, 64)
    assert not (table.rows == np.arange(1_500)[:, np.newaxis]).any(), "an item is not its own neighbour"
    rng = np.random.default_rng(1)
    items = rng.choice(1_500, 5, replace=False)
    for share in (1.0, 0.6, 0.3):
        allowed = rng.random(1_500) < share
        allowed[items] = False  # as a request excludes the items it asks about
        found = table.lookup(items, 10, allowed)
        assert found is not None
        rows, scores = exact.exact_search(vectors[items], 10, allowed)
        assert (found[0] == rows).all()
        np.testing.assert_allclose(found[1], scores, rtol=1e-5)
    strict = np.zeros(1_500, dtype=bool)
    strict[rng.choice(1_500, 40, replace=False)] = True
    assert table.lookup(items, 10, strict) is None, "too few allowed within the table: the caller must search"
    assert table.lookup(items, 65, np.ones(1_500, dtype=bool)) is None, "k beyond the table's width"
