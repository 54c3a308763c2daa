"""`recsys bench retrieval --catalogue tower` at a small size: synthetic items embedded by the real bundle's
item tower go through the candidate core, and the report holds what the docs quote."""

from __future__ import annotations

from services.common.bundle import Bundle


def test_tower_catalogue_bench_embeds_synthetic_items_and_reports_exact_recall(bundle: Bundle) -> None:
    from recsys.bench.retrieval import run

    out = run([3000], queries=40, count=100, catalogue="tower")
    (result,) = out["results"]
    assert result["items"] == 3000 and result["index"]["type"] == "flat"
    assert result["recall_at_100"] == 1.0, "exact search below flat_max_items"
    assert result["retrieve"]["calls"] == 40 and result["retrieve"]["p99_ms"] > 0
    assert "item tower" in out["catalogue"]
