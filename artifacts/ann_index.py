"""The ANN index over item vectors: which kind for which catalogue, and filtered top-k that still fills `k`.

Kinds: `flat` (exact inner product, IndexFlatIP), `hnsw` (IndexHNSWFlat, inner product) and `ivf`
(IndexIVFFlat, inner product). Filters run inside the index through an IDSelectorBitmap. HNSW and IVF can
come back short under a strict filter (the beam or the probed lists hold too few allowed items), so the
search widens the beam and, when a filter lets through at most `exact_filter_max_rows` items or the widened
search is still short, answers exactly over the allowed rows instead: a filter never costs `count`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

KINDS = ("flat", "hnsw", "ivf")
DEFAULTS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"M": 32, "efConstruction": 64, "efSearch": 128},
    # nlist 0 = about 4*sqrt(n). nprobe 80 is the lowest measured to keep recall@100 >= 0.95 at 1M items on both
    # benchmark catalogues (docs/benchmarks.md); 32 gave 0.89 on item-tower embeddings.
    "ivf": {"nlist": 0, "nprobe": 80},
}
# Settings field -> (kind, parameter)
SETTING_PARAMS = {
    "hnsw_m": ("hnsw", "M"),
    "hnsw_ef_construction": ("hnsw", "efConstruction"),
    "hnsw_ef_search": ("hnsw", "efSearch"),
    "ivf_nlist": ("ivf", "nlist"),
    "ivf_nprobe": ("ivf", "nprobe"),
}
SEARCH_TIME_PARAMS = ("efSearch", "nprobe")  # set per search: any value works with a built index
WIDEN_STEPS = 2  # beam/probe widenings (x4 each) before falling back to exact search over the allowed rows


class RowFilter:
    """A boolean mask over index rows with its count and packed bitmap, each computed at most once per request
    (several searches share one filter; at a million rows each pass costs ~0.1-0.2 ms)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self._count: int | None = None
        self._bitmap: np.ndarray | None = None

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = int(np.count_nonzero(self.mask))
        return self._count

    @property
    def bitmap(self) -> np.ndarray:
        if self._bitmap is None:
            self._bitmap = np.packbits(self.mask, bitorder="little")
        return self._bitmap


@dataclass(frozen=True)
class IndexSpec:
    kind: str
    params: dict[str, int] = field(default_factory=dict)
    chosen_by: str = "size"  # size | contract | settings

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, **self.params, "chosen_by": self.chosen_by}


def choose_spec(n_items: int, settings: Any, contract_index: Mapping[str, Any] | None = None) -> IndexSpec:
    """Settings override the bundle contract's `index` entry, which overrides the default by catalogue size."""
    contract_index = dict(contract_index or {})
    if settings.index_type != "auto":
        kind, chosen_by = settings.index_type, "settings"
    elif contract_index.get("type"):
        kind, chosen_by = str(contract_index["type"]), "contract"
    else:
        kind, chosen_by = size_default_kind(n_items, settings.flat_max_items), "size"
    if kind not in KINDS:
        raise ValueError(f"unknown index type {kind!r}; expected one of {KINDS}")
    params = dict(DEFAULTS[kind])
    for key in params:
        if key in contract_index:
            params[key] = int(contract_index[key])
    for setting, (for_kind, key) in SETTING_PARAMS.items():
        value = getattr(settings, setting, None)
        if for_kind == kind and value is not None:
            params[key] = int(value)
    if kind == "ivf":
        if params["nlist"] <= 0:
            params["nlist"] = int(min(max(4 * math.sqrt(max(n_items, 1)), 1), 65536))
        params["nlist"] = max(1, min(params["nlist"], max(n_items // 39, 1)))  # Faiss wants ~39 points per list
        params["nprobe"] = min(params["nprobe"], params["nlist"])
    return IndexSpec(kind, params, chosen_by)


def same_index(spec: IndexSpec, contract_index: Mapping[str, Any]) -> bool:
    """Whether a shipped index (built as `contract_index` says) is the one `spec` asks for."""
    return contract_index.get("type") == spec.kind and all(
        int(contract_index.get(key, -1)) == value for key, value in spec.params.items() if key not in SEARCH_TIME_PARAMS
    )


def size_default_kind(n_items: int, flat_max_items: int) -> str:
    """Exact search for small catalogues, IVF above: at 1M items IVF met recall@100 >= 0.95 at p99 <= 5 ms on
    both the Gaussian-mixture and the item-tower catalogue, HNSW only on the first (its graph falls apart on the
    tight clumps of content-only tower embeddings: 0.74)."""
    return "flat" if n_items < flat_max_items else "ivf"


def default_index_contract(n_items: int, flat_max_items: int) -> dict[str, Any]:
    """The `index` entry training writes into the retrieval contract: the kind and parameters the candidate
    service builds for this catalogue unless its settings override them (see `choose_spec`)."""
    kind = size_default_kind(n_items, flat_max_items)
    return {"type": kind, **DEFAULTS[kind]}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores of a 1-D array, best first."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    # Partitioning for the top end (no negated copy) is ~40% cheaper than partitioning -scores for the bottom.
    n = len(scores)
    part = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
    return part[np.argsort(-scores[part], kind="stable")]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 2-D score matrix, the positions of its k largest scores and those scores, best first."""
    m, n = scores.shape
    k = min(k, n)
    if m == 1:  # the common single query: 1-D indexing costs less than the along-axis machinery
        best = top_k(scores[0], k)
        return best[np.newaxis], scores[0, best][np.newaxis]
    if k <= 0:
        return np.empty((m, 0), dtype=np.int64), np.empty((m, 0), dtype=scores.dtype)
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :] if k < n else np.broadcast_to(np.arange(n), scores.shape)
    lines = np.arange(m)[:, np.newaxis]
    order = np.argsort(-scores[lines, part], axis=1, kind="stable")
    best = part[lines, order]
    return best, scores[lines, best]


class NeighbourTable:
    """Every item's `width` nearest items (itself left out), best first, computed once per bundle.

    Item-to-item queries (the recent history's neighbours, SimilarItems) then read a row and drop what the
    request's filter forbids instead of searching: at MovieLens size 5 queries cost ~15 us against ~130 us for
    the exact search. `lookup` answers only when every row still holds k allowed items, so its answer is the
    exact search's; otherwise the caller searches.
    """

    BLOCK_ROWS = 1024  # rows scored per matrix product while building (bounds the build's memory)

    def __init__(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self.rows = rows  # (n, width) int32
        self.scores = scores  # (n, width) float32

    @classmethod
    def build(cls, vectors: np.ndarray, width: int) -> NeighbourTable:
        n = len(vectors)
        width = min(width, max(n - 1, 0))
        rows = np.empty((n, width), dtype=np.int32)
        scores = np.empty((n, width), dtype=np.float32)
        vectors_t = np.ascontiguousarray(vectors.T)
        for start in range(0, n, cls.BLOCK_ROWS):
            stop = min(start + cls.BLOCK_ROWS, n)
            block = vectors[start:stop] @ vectors_t
            block[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # an item is not its own neighbour
            best, best_scores = top_k_rows(block, width)
            rows[start:stop], scores[start:stop] = best, best_scores
        return cls(rows, scores)

    @property
    def width(self) -> int:
        return int(self.rows.shape[1])

    def memory_bytes(self) -> int:
        return int(self.rows.nbytes + self.scores.nbytes)

    def lookup(self, items: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The k best allowed neighbours of each of `items` (rows, scores: (len(items), k)), or None when some
        item's table row holds fewer than k allowed items (only a search knows what lies beyond it)."""
        if k > self.width:
            return None
        candidates = self.rows[items]
        ok = allowed[candidates]
        rank = np.cumsum(ok, axis=1, dtype=np.int32)
        if len(items) and int(rank[:, -1].min()) < k:
            return None
        keep = ok & (rank <= k)  # exactly k per row, in table order (best first)
        shape = (len(items), k)
        return candidates[keep].reshape(shape).astype(np.int64), self.scores[items][keep].reshape(shape)


class AnnIndex:
    """A Faiss index over the rows of `vectors`; immutable once built, so searches need no lock."""

    def __init__(
        self, vectors: np.ndarray, spec: IndexSpec, build_threads: int = 1, built: faiss.Index | None = None
    ) -> None:
        """`built`: the same index already built over `vectors` (read from the bundle), used instead of
        building one."""
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.spec = spec
        self.n, self.dim = self.vectors.shape
        # The exact index scores with `queries @ vectors_t`: OpenBLAS multiplies a few queries by the transposed
        # view 3-6x slower than by a contiguous transpose (5 x 64 by 64 x 1,682: 92 against 15 us). Only exact
        # indexes (small catalogues) keep this second copy.
        self.vectors_t = np.ascontiguousarray(self.vectors.T) if spec.kind == "flat" else None
        self.loaded = built is not None
        if built is not None:
            if built.ntotal != self.n or built.d != self.dim:
                raise ValueError(
                    f"the shipped index holds {built.ntotal} x {built.d}; the items are {self.n} x {self.dim}"
                )
            self.index = built
            return
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(build_threads)
        try:
            self.index = self._build()
        finally:
            faiss.omp_set_num_threads(threads)

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @staticmethod
    def read(path: Path) -> faiss.Index:
        return faiss.read_index(str(path))

    @property
    def exact(self) -> bool:
        return self.spec.kind == "flat"

    def _build(self) -> faiss.Index:
        p, kind = self.spec.params, self.spec.kind
        index: Any
        if kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, p["M"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = p["efConstruction"]
        else:
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, p["nlist"], faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = self.vectors[rng.choice(self.n, size=min(self.n, p["nlist"] * 64), replace=False)]
            index.train(sample)
            self._quantizer = quantizer  # Faiss keeps a raw pointer; Python must keep the object alive
        if self.n:
            index.add(self.vectors)
        return index

    def _params(self, k: int, widen: int, selector: Any, effort: float = 1.0) -> Any:
        p = self.spec.params
        params: Any
        if self.spec.kind == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(math.ceil(p["efSearch"] * effort), k) * 4**widen
        elif self.spec.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = min(max(math.ceil(p["nprobe"] * effort), 1) * 4**widen, p["nlist"])
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return params

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | RowFilter | None = None,
        exact_max_rows: int = 0,
        effort: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (best first, -1 padded) and scores of each query among the `allowed` rows (a bool mask
        over rows; None = all). Fills k whenever k rows are allowed. `effort` scales the search beam (HNSW
        efSearch, IVF nprobe; at least k and 1) for queries that need less of it."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        filt = RowFilter(allowed) if isinstance(allowed, np.ndarray) else allowed
        allowed = None if filt is None else filt.mask
        n_allowed = self.n if filt is None else filt.count
        k = min(k, n_allowed)
        if k <= 0:
            return np.full((len(q), 0), -1, dtype=np.int64), np.zeros((len(q), 0), dtype=np.float32)
        # An exact index is searched with one matrix product and a partition: at k in the hundreds that beats
        # Faiss's per-query heaps (10 queries, k = 84, 1,682 items: 235 against 450 us).
        if self.exact or (allowed is not None and n_allowed <= exact_max_rows):
            return self.exact_search(q, k, allowed)
        bitmap = selector = None
        if filt is not None and n_allowed < self.n:
            bitmap = filt.bitmap
            selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap))  # reads `bitmap` during search
        for widen in range(WIDEN_STEPS + 1):
            scores, rows = self.index.search(q, k, params=self._params(k, widen, selector, effort))
            if (rows >= 0).all():
                return rows, scores
        del bitmap
        return self.exact_search(q, k, allowed)

    def exact_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by brute force over the allowed rows (one matrix product for all queries)."""
        q = np.atleast_2d(queries).astype(np.float32)
        n_allowed = self.n if allowed is None else int(np.count_nonzero(allowed))
        k = min(k, n_allowed)
        if allowed is not None and n_allowed * 4 < self.n:
            rows_allowed = np.flatnonzero(allowed)  # few rows pass: score only those
            best, scores = top_k_rows(q @ self.vectors[rows_allowed].T, k)
            return rows_allowed[best], scores
        all_scores = q @ (self.vectors.T if self.vectors_t is None else self.vectors_t)
        if allowed is not None:
            np.copyto(all_scores, -np.inf, where=~allowed)  # k <= n_allowed: no masked row is ever picked
        return top_k_rows(all_scores, k)

    def memory_bytes(self) -> int:
        """Approximate bytes held: the vectors plus the index's own structures."""
        vec = self.vectors.nbytes
        if self.spec.kind == "flat":
            return 3 * vec  # ours, Faiss's copy and the contiguous transpose
        if self.spec.kind == "hnsw":
            m = self.spec.params["M"]
            return 2 * vec + self.n * (2 * m) * 4 * 1  # level 0 holds 2M links of int32; upper levels are small
        return 2 * vec + self.n * 8  # IVF: vectors + ids in the lists
