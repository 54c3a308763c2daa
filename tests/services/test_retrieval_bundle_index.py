"""The retrieval index with the real bundle: `recsys bench retrieval --catalogue tower` at a small size (synthetic
items embedded by the bundle's item tower go through the candidate core, and the report holds what the docs
quote), and the Faiss index training ships in the bundle."""

from __future__ import annotations

from artifacts.bundle import Bundle


def test_tower_catalogue_bench_embeds_synthetic_items_and_reports_exact_recall(bundle: Bundle) -> None:
    from tools.bench.retrieval import run

    out = run([3000], queries=40, count=100, catalogue="tower")
    (result,) = out["results"]
    assert result["items"] == 3000 and result["index"]["type"] == "flat"
    assert result["recall_at_100"] == 1.0, "exact search below flat_max_items"
    assert result["retrieve"]["calls"] == 40 and result["retrieve"]["p99_ms"] > 0
    assert "item tower" in out["catalogue"]


def test_the_candidate_service_reads_the_bundles_faiss_index_instead_of_building_one(bundle: Bundle) -> None:
    from artifacts.bundle import INDEX_COMPONENT
    from services.candidate.retrieval import Retriever
    from services.candidate.settings import CandidateSettings
    from services.common.settings import CommonSettings

    assert INDEX_COMPONENT in bundle.manifest.components, "training ships the index"
    shipped = bundle.contract(INDEX_COMPONENT)
    retriever = Retriever.from_bundle(bundle, CommonSettings().feature_repo)
    assert retriever.index.loaded and retriever.describe()["index_from_bundle"]
    assert shipped["index"]["type"] == retriever.spec.kind and shipped["items"] == retriever.n
    # Settings that ask for another index get it built, not the shipped one.
    other = Retriever.from_bundle(bundle, CommonSettings().feature_repo, CandidateSettings(index_type="hnsw"))
    assert not other.index.loaded and other.spec.kind == "hnsw"
