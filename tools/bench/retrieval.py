"""`recsys bench retrieval`: the candidate core at catalogue sizes from thousands to millions of items.

Two synthetic catalogues (`--catalogue`):
- `tower`: the items of `training.data.synthetic.generate` (MovieLens' schema: titles, genres, years, and
  users with taste clusters) embedded by the current bundle's item tower from their content, as the candidate
  service embeds an item added at runtime; queries are the normalised mean of a synthetic user's history.
- `mixture`: a Gaussian mixture of unit-norm `dim`-d item vectors (one cluster per ~500 items, noise
of norm 0.8 around unit centres), random genres and years. Queries are "real-ish" users: the normalised mean of a
history of 5-20 items drawn from one or two clusters, plus noise, as a two-tower query vector sits near the
items a user consumed. Each request excludes 20 seen items and carries 3 recent items, so every source runs.

Per size it reports: index build seconds (service load of the retrieval part), resident memory growth, p50 /
p99 of service-side `Retrieve` of `count` candidates (the work the servicer runs in its executor: filters,
ANN, neighbours, merge; no gRPC hop) and recall@100 of the ANN against exact search with the same filter.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tools.bench.recommend import machine, percentiles

GENRES = ("Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Horror",
          "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")  # fmt: skip


# Noise norm around a unit cluster centre: items sit at cosine ~0.78 from their centre. Much tighter clusters
# (0.35, cosine ~0.94) leave HNSW graphs nearly disconnected between clusters; see docs/retrieval.md.
SPREAD = 0.8


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def synthetic_catalogue(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) unit item vectors from a Gaussian mixture, and each item's cluster."""
    rng = np.random.default_rng(seed)
    k = max(16, n // 500)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, k, n)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        c = cluster[start : start + 100_000]
        x = centres[c] + SPREAD * rng.normal(size=(len(c), dim)).astype(np.float32) / np.float32(np.sqrt(dim))
        out[start : start + len(c)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, cluster


def synthetic_users(vectors: np.ndarray, cluster: np.ndarray, n_users: int, seed: int = 1) -> tuple[np.ndarray, list]:
    """Query vectors of users and their histories (item rows)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[order], np.arange(cluster.max() + 2))
    queries = np.empty((n_users, vectors.shape[1]), dtype=np.float32)
    histories = []
    for u in range(n_users):
        taste = rng.integers(0, cluster.max() + 1, rng.integers(1, 3))
        pool = np.concatenate([order[starts[t] : starts[t + 1]] for t in taste])
        history = rng.choice(pool, size=min(len(pool), int(rng.integers(5, 21))), replace=False)
        noise = np.asarray(rng.normal(size=vectors.shape[1]), dtype=np.float32)
        q = vectors[history].mean(axis=0) + 0.05 * noise
        queries[u] = q / np.linalg.norm(q)
        histories.append(history)
    return queries, histories


def tower_catalogue(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, dict[str, list[Any]], np.ndarray, list]:
    """Item vectors from the current bundle's item tower over `training.data.synthetic` items, their features,
    and query vectors with histories (item rows) of synthetic users with at least 5 interactions."""
    from artifacts.bundle import ITEM_TOWER_COMPONENT, load_current
    from services.candidate.towers import ItemTower
    from services.common.settings import CommonSettings
    from training.data.synthetic import generate

    bundle = load_current(CommonSettings().bundle_dir)
    if ITEM_TOWER_COMPONENT not in bundle.manifest.components:
        raise SystemExit(f"bundle {bundle.version} has no item tower; --catalogue tower needs one")
    tower = ItemTower(bundle.component(ITEM_TOWER_COMPONENT), bundle.contract(ITEM_TOWER_COMPONENT), threads=2)
    data = generate(n_users=4 * n_queries, n_items=n, seed=seed)
    items = data.items
    titles, years, genres = items["title"].tolist(), items["year"].astype(int).tolist(), items["genres"].tolist()
    chunks = []
    for start in range(0, n, 50_000):
        part = slice(start, start + 50_000)
        chunks.append(tower.embed([0] * len(titles[part]), titles[part], years[part], genres[part]))
    vectors = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    inter = data.interactions
    rows = inter["item_id"].astype(np.int64).to_numpy() - 1
    by_user = pd.Series(rows).groupby(inter["user_id"].to_numpy()).agg(list)
    histories = [np.asarray(h, dtype=np.int64) for h in by_user.tolist() if len(h) >= 5][:n_queries]
    rng = np.random.default_rng(seed + 1)
    queries = np.empty((len(histories), vectors.shape[1]), dtype=np.float32)
    for u, h in enumerate(histories):
        noise = np.asarray(rng.normal(size=vectors.shape[1]), dtype=np.float32)
        q = vectors[h].mean(axis=0) + 0.05 * noise
        queries[u] = q / max(float(np.linalg.norm(q)), 1e-9)
    return vectors, {"genres": genres, "title": titles, "year": years}, queries, histories


def run_one(
    n: int, dim: int, n_queries: int, count: int, settings_kwargs: dict[str, Any], catalogue_kind: str = "mixture"
) -> dict[str, Any]:
    import faiss

    from services.candidate.bundle_parts import BundleParts
    from services.candidate.query import RetrievalQuery
    from services.candidate.retrieval import Retriever
    from services.candidate.settings import CandidateSettings
    from services.common.catalogue import Catalogue

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(2)
    if catalogue_kind == "tower":
        vectors, features, queries, histories = tower_catalogue(n, n_queries)
        n_queries, dim = len(histories), vectors.shape[1]
    else:
        vectors, cluster = synthetic_catalogue(n, dim)
        queries, histories = synthetic_users(vectors, cluster, n_queries)
        genre_idx = rng.integers(0, len(GENRES), (n, 2))
        features = {
            "genres": [[GENRES[a]] if a == b else [GENRES[a], GENRES[b]] for a, b in genre_idx.tolist()],
            "title": [""] * n,
            "year": rng.integers(1950, 2026, n).tolist(),
        }
    item_ids = np.arange(1, n + 1).astype(str)
    catalogue = Catalogue.from_features(item_ids.tolist(), features)
    popularity = rng.zipf(1.5, n).clip(max=10**6)
    seen_lists = [h[:20] for h in histories]
    arrays = {
        "item_ids": item_ids,
        "item_vectors": vectors,
        "user_ids": np.arange(n_queries).astype(str),
        "user_vectors": queries,
        "seen_indptr": np.concatenate([[0], np.cumsum([len(s) for s in seen_lists])]).astype(np.int64),
        "seen_indices": np.concatenate(seen_lists).astype(np.int32),
        "popular_items": np.argsort(-popularity, kind="stable").astype(np.int32),
        "popularity": popularity.astype(np.int64),
    }
    settings = CandidateSettings(**settings_kwargs)
    gc.collect()
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    retriever = Retriever(BundleParts("bench", arrays, catalogue, contract={"model": "two_tower"}), settings)
    build_s = time.perf_counter() - t0
    rss1 = _rss_bytes()
    requests = [RetrievalQuery(str(u), [str(item_ids[r]) for r in histories[u][-3:]], count) for u in range(n_queries)]
    for q in requests[:50]:
        retriever.retrieve(q)
    samples = []
    for q in requests:
        t = time.perf_counter()
        retriever.retrieve(q)
        samples.append((time.perf_counter() - t) * 1000)
    # Recall and ANN-only time on every 5th request, with the request's own filter (seen + recent items).
    recalls, ann_ms = [], []
    for q in requests[::5][:200]:
        recent = retriever.rows.rows_of(q.recent_item_ids, retriever.live)
        allowed = retriever.filters.masks(q, retriever.live, recent).main
        vector = retriever.user_vectors[int(q.user_id)]
        t = time.perf_counter()
        rows, _ = retriever.index.search(vector, count, allowed, settings.exact_filter_max_rows)
        ann_ms.append((time.perf_counter() - t) * 1000)
        exact, _ = retriever.index.exact_search(vector, 100, allowed)
        truth = exact[0][exact[0] >= 0]
        recalls.append(len(np.intersect1d(truth, rows[0][:100])) / max(len(truth), 1))
    result = {
        "items": n,
        "dim": dim,
        "index": retriever.spec.describe(),
        "build_s": round(build_s, 2),
        "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
        "index_estimate_mb": round(retriever.index.memory_bytes() / 2**20, 1),
        "retrieve": {"count": count, "calls": len(samples), **percentiles(samples)},
        "ann_search_only": percentiles(ann_ms),
        "recall_at_100": round(float(np.mean(recalls)), 4) if recalls else None,
        "recall_queries": len(recalls),
        "recall_min": round(float(np.min(recalls)), 4) if recalls else None,
    }
    del retriever
    gc.collect()
    return result


CATALOGUES = {
    "mixture": "Gaussian mixture, unit-norm, one cluster per ~500 items; queries: noisy history means",
    "tower": "training.data.synthetic items embedded from their content by the current bundle's item tower; "
    "queries: noisy means of synthetic users' histories",
}


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["items"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["retrieve"]["p50_ms"] for r in results], "o-", label="Retrieve p50")
    a.plot(n, [r["retrieve"]["p99_ms"] for r in results], "o-", label="Retrieve p99")
    a.plot(n, [r["ann_search_only"]["p50_ms"] for r in results], "o--", label="ANN search only p50")
    for r in results:
        a.annotate(r["index"]["type"], (r["items"], r["retrieve"]["p99_ms"]), textcoords="offset points", xytext=(4, 4))
    a.set(xscale="log", xlabel="items", ylabel="ms", title=f"{results[0]['retrieve']['count']} candidates")
    a.legend()
    b.plot(n, [r["rss_growth_mb"] for r in results], "o-", label="resident memory growth")
    b.plot(n, [r["index_estimate_mb"] for r in results], "o--", label="vectors + index (estimate)")
    b.set(xscale="log", yscale="log", xlabel="items", ylabel="MiB", title="memory")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(
    items: Sequence[int], queries: int = 1000, count: int = 500, dim: int = 64, index: str = "auto",
    plot_path: Path | None = None, catalogue: str = "mixture",
) -> dict[str, Any]:  # fmt: skip
    settings: dict[str, Any] = {"index_type": index, "build_threads": 2}
    results = [run_one(n, dim, queries, count, settings, catalogue) for n in items]
    out: dict[str, Any] = {
        "benchmark": "retrieval",
        "catalogue": CATALOGUES[catalogue],
        "results": results,
        "machine": machine(),
    }
    if plot_path is not None and len(results) > 1:
        out["plot"] = str(plot(results, plot_path))
    return out


def run_bundle(queries: int = 1000, count: int = 500) -> dict[str, Any]:
    """`Retriever.retrieve` on the current bundle (RECSYS_BUNDLE_DIR) as the candidate service loads it, for
    the real users round-robin with their online features (recent items, demographics) as the gateway sends
    them; with and without the bundle's EASE history affinity (when it has one)."""
    import faiss

    from artifacts.bundle import load_current
    from services.candidate.query import RetrievalQuery
    from services.candidate.retrieval import Retriever
    from services.candidate.settings import CandidateSettings
    from services.common.server import freeze_loaded_heap
    from services.common.settings import CommonSettings
    from services.gateway.user_features import UserFeatureReader

    faiss.omp_set_num_threads(1)  # as the service searches
    common = CommonSettings()
    bundle = load_current(common.bundle_dir)
    retriever = Retriever.from_bundle(bundle, common.feature_repo, CandidateSettings(build_threads=1))
    reader = UserFeatureReader(common.feature_repo, "gateway_user_v1")
    users = [str(u) for u in retriever.fallback.seen.user_pos]
    features = {u: reader.read(u) for u in users}
    freeze_loaded_heap()  # as the service does once loaded: collections then skip the loaded heap

    def timed() -> dict[str, float]:
        samples = []
        for i in range(queries + 50):
            user = users[i % len(users)]
            f = features[user]
            query = RetrievalQuery(user_id=user, recent_item_ids=list(f.recent_item_ids), count=count,
                                   user_features=f, request_time=int(time.time()))  # fmt: skip
            t0 = time.perf_counter()
            retriever.retrieve(query)
            if i >= 50:
                samples.append((time.perf_counter() - t0) * 1000)
        return percentiles(samples)

    out: dict[str, Any] = {
        "benchmark": "retrieval_bundle",
        "bundle_version": bundle.version,
        "items": retriever.n,
        "index": retriever.spec.describe(),
        "count": count,
        "calls": queries,
        "query_tower": retriever.query_tower is not None,
        "retrieve": timed(),
    }
    if retriever.history is not None:
        history, retriever.history = retriever.history, None
        out["retrieve_without_history_affinity"] = timed()
        retriever.history = history
    out["machine"] = machine()
    return out
