"""Source merging and the Retriever on a small synthetic catalogue (no feature store, no gRPC)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from recsys.common.v1 import common_pb2
from services.candidate.bundle_parts import BundleParts
from services.candidate.live import ItemContent
from services.candidate.monitor import RecallMonitor
from services.candidate.query import AnnProbe, RetrievalQuery
from services.candidate.retrieval import Retriever
from services.candidate.settings import CandidateSettings
from services.candidate.sources.base import SourceList
from services.candidate.sources.merge import merge
from services.candidate.sources.segments import Segments
from services.common.catalogue import Catalogue
from services.common.errors import NotFound

from .test_retrieval_index import clustered

EMB, NB, SEG, FRESH, POP = (
    common_pb2.CANDIDATE_SOURCE_EMBEDDING,
    common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS,
    common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR,
    common_pb2.CANDIDATE_SOURCE_FRESH,
    common_pb2.CANDIDATE_SOURCE_POPULAR,
)
GENRES = ("Action", "Comedy", "Drama", "Western")


def test_merge_keeps_quotas_removes_duplicates_and_interleaves() -> None:
    a = SourceList(EMB, np.arange(0, 100), np.linspace(1, 0, 100, dtype=np.float32), 0.6)
    b = SourceList(NB, np.arange(50, 150), np.linspace(1, 0, 100, dtype=np.float32), 0.4)
    rows, _, sources = merge([a, b], 20, 200)
    assert len(rows) == 20 == len(set(rows.tolist()))
    assert Counter(sources) == {EMB: 12, NB: 8}
    assert set(rows[np.array(sources) == NB].tolist()) <= set(range(50, 150))
    assert sources[:5].count(EMB) >= 2 and sources[:5].count(NB) >= 1, "interleaved"


def test_merge_gives_unused_quota_to_the_others_and_dedups_in_priority_order() -> None:
    a = SourceList(EMB, np.arange(0, 100), np.zeros(100, dtype=np.float32), 0.5)
    b = SourceList(NB, np.array([0, 1, 2]), np.zeros(3, dtype=np.float32), 0.5)  # all already taken by a
    rows, _, sources = merge([a, b], 50, 100)
    assert len(rows) == 50 and Counter(sources) == {EMB: 50}
    pop = SourceList(POP, np.arange(90, 100), np.zeros(10, dtype=np.float32), 0.0)
    rows, _, sources = merge([b, pop], 10, 100)
    assert Counter(sources) == {NB: 3, POP: 7}


def _retriever(n: int = 3000, dim: int = 16, item_affinity: np.ndarray | None = None, **settings: object) -> Retriever:
    rng = np.random.default_rng(0)
    items = clustered(n, dim)
    users = clustered(50, dim, seed=3)
    item_ids = [f"i{k}" for k in range(n)]
    genres = [[GENRES[k % 4]] + ([GENRES[(k // 4) % 4]] if k % 3 == 0 else []) for k in range(n)]
    genres = [sorted(set(g)) for g in genres]
    catalogue = Catalogue.from_features(
        item_ids, {"genres": genres, "title": item_ids, "year": (1950 + np.arange(n) % 60).tolist()}
    )
    seen = [rng.choice(n, 20, replace=False) for _ in range(50)]
    popularity = rng.integers(0, 1000, n)
    arrays = {
        "item_ids": np.asarray(item_ids),
        "item_vectors": items,
        "user_ids": np.asarray([f"u{k}" for k in range(50)]),
        "user_vectors": users,
        "seen_indptr": np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64),
        "seen_indices": np.concatenate(seen).astype(np.int32),
        "popular_items": np.argsort(-popularity).astype(np.int32),
        "popularity": popularity,
    }
    segs = Segments(
        user_pos={f"u{k}": k for k in range(50)},
        user_segment=np.arange(50) % 2,
        centroids=clustered(2, dim, seed=5),
        popular=np.stack([np.arange(0, 200, 2), np.arange(1, 200, 2)]),
    )
    s = CandidateSettings(**settings)  # type: ignore[arg-type]
    parts = BundleParts(
        "v1", arrays, catalogue, contract={"model": "two_tower"}, segments=segs, item_affinity=item_affinity
    )
    return Retriever(parts, s)


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return _retriever()


def test_known_user_gets_embedding_neighbours_and_fresh_items(retriever: Retriever) -> None:
    c = retriever.retrieve(RetrievalQuery("u0", ["i1", "i2"], 200))
    assert len(c.item_ids) == 200 == len(set(c.item_ids)) and not c.cold_start
    counts = Counter(c.sources)
    assert counts[EMB] >= 100 and counts[NB] > 0 and counts[FRESH] > 0
    assert SEG not in counts, "segments are for users without a history of their own"
    assert not {"i1", "i2"} & set(c.item_ids)
    assert np.all(np.diff(c.scores) <= 0), "scores follow the merged order"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_strict_filter_returns_count_for_each_index_type(kind: str) -> None:
    r = _retriever(index_type=kind, exact_filter_max_rows=0, hnsw_ef_search=16, ivf_nlist=64, ivf_nprobe=1)
    q = RetrievalQuery("u1", ["i5"], 150, include_genres=["Western"], exclude_genres=["Action"],
                       exclude_item_ids=[f"i{k}" for k in range(100)])  # fmt: skip
    c = r.retrieve(q)
    assert len(c.item_ids) == 150 == len(set(c.item_ids))
    for item in c.item_ids:
        g = r.catalogue.genres[r.item_pos[item]]
        assert "Western" in g and "Action" not in g and int(item[1:]) >= 100


def test_removed_items_never_come_back_and_upserts_are_retrievable_at_once() -> None:
    r = _retriever()
    before = r.retrieve(RetrievalQuery("u0", ["i1"], 500))
    gone = before.item_ids[:50]
    r.remove(gone)
    for user in ("u0", "u1", "nobody"):
        c = r.retrieve(RetrievalQuery(user, ["i1"], 2000))
        assert not set(gone) & set(c.item_ids)
    with pytest.raises(NotFound):
        r.similar_items(gone[0], 5)
    assert not set(gone) & set(r.similar_items("i1", 500)[0])
    # A new item pointing where user u0 looks is the first embedding candidate, with the given genres.
    added, updated = r.upsert([ItemContent("new-1", "New", ("Comedy",), 2030, tuple(r.user_vectors[0].tolist()))])
    assert (added, updated) == (1, 0)
    c = r.retrieve(RetrievalQuery("u0", [], 100, include_genres=["Comedy"]))
    emb = [i for i, s in zip(c.item_ids, c.sources, strict=True) if s == EMB]
    assert emb[0] == "new-1"
    assert "new-1" not in r.retrieve(RetrievalQuery("u0", [], 100, include_genres=["Drama"])).item_ids
    assert r.similar_items("new-1", 3)[0]
    # Re-adding a removed item brings it back; removing a runtime item takes it out.
    r.upsert([ItemContent(gone[0], "Back", ("Drama",), 1999, tuple(r.item_vectors[0].tolist()))])
    assert r.row_of(gone[0]) is not None
    r.remove(["new-1"])
    assert "new-1" not in r.retrieve(RetrievalQuery("u0", [], 2000)).item_ids


def test_cold_user_gets_popular_and_a_user_with_history_gets_neighbours(retriever: Retriever) -> None:
    cold = retriever.retrieve(RetrievalQuery("stranger", [], 30))
    assert cold.cold_start and set(cold.sources) == {POP}
    warm = retriever.retrieve(RetrievalQuery("stranger", ["i10", "i20"], 30))
    assert not warm.cold_start and Counter(warm.sources).most_common(1)[0][0] == NB


def test_recall_monitor_measures_off_the_request_path() -> None:
    r = _retriever(index_type="hnsw", hnsw_ef_search=16)
    monitor = RecallMonitor(rate=1.0, k=50, seed=0)
    probes: list[AnnProbe] = []
    for u in range(20):
        r.retrieve(RetrievalQuery(f"u{u}", [], 100), probe=probes.append)
    for p in probes:
        monitor.offer(r.index, p)
        monitor._busy.acquire()  # wait for the background thread: one probe at a time
        monitor._busy.release()
    monitor.close()
    assert monitor.samples == 20 and monitor.mean_recall is not None and monitor.mean_recall >= 0.9


def test_a_seen_item_stays_excluded_after_its_content_is_replaced() -> None:
    r = _retriever()
    seen = r.fallback.seen.rows("u0")[:3]
    seen_ids = [str(r.fallback.item_ids[i]) for i in seen]
    vec = tuple(r.user_vectors[0].tolist())  # would be the best match for u0
    r.upsert([ItemContent(i, "Re-cut", ("Drama",), 2001, vec) for i in seen_ids])
    assert not set(seen_ids) & set(r.retrieve(RetrievalQuery("u0", [], 2000)).item_ids)
    assert set(seen_ids) <= set(r.retrieve(RetrievalQuery("u1", [], 2000)).item_ids)


def test_history_affinity_sums_the_item_weights_over_the_whole_history() -> None:
    n = 300
    weights = np.random.default_rng(7).normal(size=(n, n)).astype(np.float32)
    r = _retriever(n=n, item_affinity=weights)
    c = r.retrieve(RetrievalQuery("u0", ["i1", "i2"], 50))
    assert c.affinity is not None and c.affinity.shape == (50,)
    history = np.union1d(r.fallback.seen.rows("u0"), [1, 2])  # the bundle's training items and the recent ones
    rows = np.asarray([r.item_pos[i] for i in c.item_ids])
    assert np.allclose(c.affinity, weights[history][:, rows].sum(axis=0), atol=1e-4)
    # A heavy history (more than n/4 items) takes the matrix-vector path: the same sums.
    heavy = np.arange(0, 200)
    assert r.history is not None
    got = r.history.totals("u0", heavy)
    assert got is not None
    assert np.allclose(
        got[rows], weights[np.union1d(r.fallback.seen.rows("u0"), heavy)][:, rows].sum(axis=0), atol=1e-3
    )
    cold = r.retrieve(RetrievalQuery("nobody", [], 20))
    assert cold.affinity is not None and not cold.affinity.any(), "no history, no affinity"
    assert _retriever(n=n).retrieve(RetrievalQuery("u0", [], 10)).affinity is None, "no weights in the bundle"
    with pytest.raises(ValueError, match="item_affinity"):
        _retriever(n=n, item_affinity=weights[:10])


def test_history_affinity_source_proposes_the_best_allowed_items_by_the_weights() -> None:
    n = 300
    weights = np.random.default_rng(11).normal(size=(n, n)).astype(np.float32)
    r = _retriever(n=n, item_affinity=weights, quota_affinity=0.3)
    query = RetrievalQuery("u0", ["i1"], 40, exclude_genres=["Western"])
    c = r.retrieve(query)
    got = [i for i, s in zip(c.item_ids, c.sources, strict=True) if s == common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY]
    assert len(got) == 10, "its share: 0.3 of the quotas in play (embedding 0.6, neighbours 0.2, fresh 0.05), of 40"
    history = np.union1d(r.fallback.seen.rows("u0"), [1])
    totals = weights[history].sum(axis=0)
    allowed = r.filters.masks(query, r.live, np.asarray([1])).main
    best = [f"i{k}" for k in np.argsort(-np.where(allowed, totals, -np.inf))[:40]]
    assert set(got) <= set(best), "the source's items are the top allowed items by history affinity"
    assert not {"Western"} & {g for i in got for g in r.catalogue.genres[r.item_pos[i]]}, "filters hold"
    assert len(set(c.item_ids)) == 40
    # Absent with quota 0, from bundles without the weights and for users without history.
    no_quota = _retriever(n=n, item_affinity=weights, quota_affinity=0.0).retrieve(query)
    assert common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY not in no_quota.sources
    assert common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY not in _retriever(n=n).retrieve(query).sources
    cold = r.retrieve(RetrievalQuery("nobody", [], 20))
    assert common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY not in cold.sources and len(cold.item_ids) == 20


def test_the_feast_segment_of_the_same_bundle_picks_the_cold_users_segment_popular_items() -> None:
    r = _retriever()
    even, odd = set(r.rows.ids_of(np.arange(0, 200, 2), r.live)), set(r.rows.ids_of(np.arange(1, 200, 2), r.live))

    def segment_items(features: common_pb2.UserFeatures) -> set[str]:
        c = r.retrieve(RetrievalQuery("new-user", [], 40, user_features=features))
        return {i for i, s in zip(c.item_ids, c.sources, strict=True) if s == SEG}

    got = segment_items(common_pb2.UserFeatures(user_id="new-user", segment=1, segment_bundle_version="v1"))
    assert got and got <= odd, "segment 1's popular items"
    got = segment_items(common_pb2.UserFeatures(user_id="new-user", segment=0, segment_bundle_version="v1"))
    assert got and got <= even
    # A segment assigned with another bundle's k-means means nothing here: no segment source for this user.
    assert not segment_items(common_pb2.UserFeatures(user_id="new-user", segment=1, segment_bundle_version="v0"))
    assert r.segments is not None and r.segments.segment_of("u3", None, assigned=7) == 1, "out of range: ignored"


def test_bundle_history_totals_are_cached_per_user_within_the_bound() -> None:
    n = 300
    weights = np.random.default_rng(5).normal(size=(n, n)).astype(np.float32)
    r = _retriever(n=n, item_affinity=weights, affinity_cache_users=2)
    assert r.history is not None
    expected = {u: weights[r.fallback.seen.rows(u)].sum(axis=0) for u in ("u0", "u1", "u2")}
    for _ in range(2):
        for u, want in expected.items():
            got = r.history.totals(u, np.empty(0, dtype=np.int64))
            assert got is not None and np.allclose(got, want, atol=1e-4)
    assert list(r.history.cached()) == ["u1", "u2"], "least recently used out"
    # Fresh items not in the bundle history add their rows on top of the cached part, without changing it.
    fresh = np.asarray([r.fallback.seen.rows("u2")[0], 299])  # one already seen, one new
    with_fresh = r.history.totals("u2", fresh)
    extra = 0 if 299 in r.fallback.seen.rows("u2") else weights[299]
    assert with_fresh is not None and np.allclose(with_fresh, expected["u2"] + extra, atol=1e-4)
    assert np.allclose(r.history.cached()["u2"], expected["u2"], atol=1e-4)


def test_history_totals_of_the_heaviest_users_are_computed_at_load() -> None:
    n = 300
    weights = np.random.default_rng(6).normal(size=(n, n)).astype(np.float32)
    r = _retriever(n=n, item_affinity=weights, affinity_cache_users=3)
    assert r.history is not None
    cached = r.history.cached()
    seen = r.fallback.seen
    lengths = {u: len(seen.rows(u)) for u in seen.user_pos}
    heaviest = sorted(lengths, key=lambda u: -lengths[u])[:3]
    assert set(cached) == set(heaviest)
    for u in heaviest:  # what a miss would compute: the sum of the user's weight rows
        assert np.allclose(cached[u], weights[seen.rows(u)].sum(axis=0), atol=1e-4)
    assert not cached[heaviest[0]].flags.writeable
    uncached = _retriever(n=n, item_affinity=weights, affinity_cache_users=0).history
    assert uncached is not None and not uncached.cached()


def test_the_neighbour_table_changes_no_answer() -> None:
    """Retrieve and SimilarItems give the same items with the precomputed neighbour lists as by searching,
    under filters, removals and a runtime item in the catalogue."""
    with_table, searched = _retriever(), _retriever(neighbour_table_max_items=0)
    assert with_table.search.neighbour_table is not None and searched.search.neighbour_table is None
    for r in (with_table, searched):
        r.remove(["i7", "i8"])
        r.upsert([ItemContent("new-1", "New", ("Comedy",), 2030, tuple(r.item_vectors[3].tolist()))])
    queries = [
        RetrievalQuery("u0", ["i3", "i4", "i5"], 200),
        RetrievalQuery("u1", ["i9"], 300, include_genres=["Comedy"], exclude_item_ids=["i10"]),
        RetrievalQuery("nobody", ["i3", "new-1"], 100),  # a runtime item in the history: searched
    ]
    for q in queries:
        a, b = with_table.retrieve(q), searched.retrieve(q)
        assert a.item_ids == b.item_ids and a.sources == b.sources
    for item in ("i3", "i9", "new-1"):
        assert with_table.similar_items(item, 30)[0] == searched.similar_items(item, 30)[0]
    assert "new-1" in with_table.similar_items("i3", 5)[0], "runtime items are merged into table answers"


def test_warm_up_changes_no_answer_and_no_state() -> None:
    """The start-up warm-up runs real requests through the retriever; it must leave nothing behind that a later
    request could see: the same answers, the same runtime catalogue and the same totals cache."""
    n = 300
    weights = np.random.default_rng(7).normal(size=(n, n)).astype(np.float32)
    # A cache smaller than the users, so that a warm-up request for an uncached user would evict one.
    warmed, cold = (_retriever(n=n, item_affinity=weights, affinity_cache_users=10) for _ in range(2))
    assert warmed.history is not None
    cache_before = list(warmed.history.cached())
    warmed.warm_up()
    assert list(warmed.history.cached()) == cache_before and warmed.live.n_delta == 0
    for q in (RetrievalQuery("u0", ["i3"], 100), RetrievalQuery("", [], 100), RetrievalQuery("new", ["i5"], 50)):
        a, b = warmed.retrieve(q), cold.retrieve(q)
        assert a.item_ids == b.item_ids and a.sources == b.sources and np.allclose(a.scores, b.scores)
