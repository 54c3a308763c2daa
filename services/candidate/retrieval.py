"""The candidate generation core: no gRPC here, only arrays in and arrays out.

Sources, merged with quotas (settings) and provenance (services/candidate/sources.py):
  - EMBEDDING: ANN of the user's query vector: the query tower on the request's fresh history, demographics
    and context when the bundle has one, else the bundle's precomputed user vector;
  - ITEM_NEIGHBOURS: item-to-item neighbours of the most recent items (also what a user unknown to the model
    but with fresh history gets from a bundle without a query tower);
  - HISTORY_AFFINITY: the best items by the bundle's item-to-item (DLAE or EASE) weights summed over the user's
    whole history (training interactions plus fresh items), for bundles with the item_affinity component;
  - SEGMENT_POPULAR / TRENDING: for a user with no history of their own who can still be placed (known to
    the segments, or a query vector from demographics): popular in their segment, else recently popular;
  - FRESH: items added at runtime, then the newest releases (for users with a query vector);
  - POPULAR (or TRENDING with cold_start_source=trending): fills what the others leave empty; the whole
    answer for a cold-start user.
Every source searches with the same filter (genres, exclusions, seen items, removed items), inside the index
where possible (artifacts/ann_index.py), so a strict filter still returns `count` items whenever that
many qualify.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.ann_index import (
    AnnIndex,
    IndexSpec,
    NeighbourTable,
    choose_spec,
    same_index,
    top_k,
    top_k_rows,
)
from artifacts.bundle import (
    AFFINITY_COMPONENT,
    AFFINITY_CONTRACT,
    INDEX_COMPONENT,
    ITEM_TOWER_COMPONENT,
    QUERY_TOWER_COMPONENT,
    RETRIEVAL_COMPONENT,
    RETRIEVAL_CONTRACT,
    SEGMENTS_COMPONENT,
    Bundle,
)
from recsys.common.v1 import common_pb2
from services.candidate.live import FilterKey, FilterMasks, ItemContent, LiveItems
from services.candidate.settings import CandidateSettings
from services.candidate.sources import SourceList, first_occurrences, merge
from services.candidate.towers import ItemTower, QueryTower
from services.common.catalogue import Catalogue, ItemFeatureReader, read_item_features
from services.common.errors import NotFound
from services.common.retrieval_data import check_genres, fallback_from_arrays, has_bias_column

log = logging.getLogger(__name__)

SOURCE_EMBEDDING = common_pb2.CANDIDATE_SOURCE_EMBEDDING
SOURCE_NEIGHBOURS = common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS
SOURCE_POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR
SOURCE_SEGMENT = common_pb2.CANDIDATE_SOURCE_SEGMENT_POPULAR
SOURCE_TRENDING = common_pb2.CANDIDATE_SOURCE_TRENDING
SOURCE_FRESH = common_pb2.CANDIDATE_SOURCE_FRESH
SOURCE_AFFINITY = common_pb2.CANDIDATE_SOURCE_HISTORY_AFFINITY


@dataclass(frozen=True)
class RetrievalQuery:
    user_id: str
    recent_item_ids: Sequence[str]
    count: int
    include_genres: Sequence[str] = ()
    exclude_genres: Sequence[str] = ()
    exclude_item_ids: Sequence[str] = ()
    user_features: common_pb2.UserFeatures | None = None
    request_time: int | None = None  # seconds since the epoch
    device: int = 0  # common_pb2.DeviceType


@dataclass(frozen=True)
class Candidates:
    item_ids: list[str]
    scores: np.ndarray  # float32
    sources: list[common_pb2.CandidateSource]
    cold_start: bool
    affinity: np.ndarray | None = None  # float32, parallel to item_ids; None without item_affinity weights


@dataclass(frozen=True)
class AnnProbe:
    """What the recall monitor needs to answer one ANN query again, exactly."""

    query: np.ndarray
    allowed: np.ndarray  # bool over bundle rows (the request's own copy)
    rows: np.ndarray  # bundle rows the ANN returned, best first
    k: int


@dataclass(frozen=True)
class Segments:
    user_pos: dict[str, int]
    user_segment: np.ndarray  # (n_users,)
    centroids: np.ndarray  # (k, dim)
    popular: np.ndarray  # (k, m) bundle item rows

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Segments:
        return cls(
            user_pos={str(u): i for i, u in enumerate(arrays["user_ids"].tolist())},
            user_segment=np.asarray(arrays["user_segment"], dtype=np.int64),
            centroids=np.asarray(arrays["centroids"], dtype=np.float32),
            popular=np.asarray(arrays["popular_by_segment"], dtype=np.int64),
        )

    def segment_of(self, user_id: str, vector: np.ndarray | None, assigned: int | None = None) -> int | None:
        """`assigned` (the Feast `segment` feature, already checked to be of this bundle) first, then the
        bundle's own assignment, then the centroid nearest to the query vector."""
        if assigned is not None and 0 <= assigned < len(self.centroids):
            return assigned
        pos = self.user_pos.get(user_id)
        if pos is not None:
            return int(self.user_segment[pos])
        if vector is not None and len(self.centroids) and vector.shape[-1] == self.centroids.shape[1]:
            return int(((self.centroids - vector) ** 2).sum(axis=1).argmin())
        return None


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def first_allowed(order: np.ndarray, allowed: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` entries of `order` that `allowed` lets through, reading only as much of a long order
    (a million items) as needed."""
    if limit <= 0:
        return order[:0]
    size = max(4 * limit, 1024)
    while True:
        head = order[:size]
        rows = head[allowed[head]]
        if len(rows) >= limit or size >= len(order):
            return rows[:limit]
        size *= 4


def _rank_scores(n: int) -> np.ndarray:
    """Scores in (0, 1] that only say "best first", for lists without a native score."""
    return (1.0 / (1.0 + np.arange(n, dtype=np.float32) / max(n, 1))).astype(np.float32)


class Retriever:
    """One bundle's index, embeddings, towers and source data, plus the runtime catalogue changes on top.

    Searches and admin changes are safe from several threads: the bundle part never changes and each change
    swaps one immutable `LiveItems` snapshot.
    """

    def __init__(
        self,
        version: str,
        arrays: dict[str, np.ndarray],
        catalogue: Catalogue,
        settings: CandidateSettings | None = None,
        *,
        contract: Mapping[str, Any] | None = None,
        query_tower: QueryTower | None = None,
        item_tower: ItemTower | None = None,
        segments: Segments | None = None,
        recent_popularity: np.ndarray | None = None,
        item_affinity: np.ndarray | None = None,
        shipped_index: tuple[Path, Mapping[str, Any]] | None = None,
    ) -> None:
        """`shipped_index`: the bundle's own Faiss index over `item_vectors` (its file and how it was built);
        read instead of building one when it is the index the settings ask for."""
        self.version = version
        self.catalogue = catalogue
        self.settings = settings or CandidateSettings()
        contract = dict(contract or {})
        self.contract = contract
        self.fallback = fallback_from_arrays(arrays)
        if list(catalogue.item_ids) != self.fallback.item_ids.tolist():
            raise ValueError("the catalogue is not aligned with the bundle's items")
        self.item_vectors = np.ascontiguousarray(arrays["item_vectors"], dtype=np.float32)
        self.user_vectors = np.ascontiguousarray(arrays["user_vectors"], dtype=np.float32)
        self.n, self.dim = self.item_vectors.shape
        # BPR-MF bundles carry a bias column last (user vectors hold 1.0 there); two-tower ones do not.
        self.has_bias = has_bias_column(contract)
        self.spec: IndexSpec = choose_spec(self.n, self.settings, contract.get("index"))
        built = None
        if shipped_index is not None:
            path, built_as = shipped_index
            if same_index(self.spec, built_as):
                built = AnnIndex.read(path)
            else:
                log.info("bundle %s: building a %s index (settings) instead of the shipped %s", version,
                         self.spec.describe(), dict(built_as))  # fmt: skip
        self.index = AnnIndex(self.item_vectors, self.spec, self.settings.build_threads, built)
        if self.has_bias:
            # "Similar" is cosine over the factors without the bias: exact, in its own small space.
            self.similarity = AnnIndex(_normalised(self.item_vectors[:, :-1]), IndexSpec("flat"))
        else:
            self.similarity = self.index
        self.neighbour_table: NeighbourTable | None = None
        if 1 < self.n <= self.settings.neighbour_table_max_items:
            self.neighbour_table = NeighbourTable.build(self.similarity.vectors, self.settings.neighbour_table_width)
        self.query_tower = query_tower
        self.item_tower = item_tower
        self.segments = segments
        if item_affinity is not None and item_affinity.shape != (self.n, self.n):
            raise ValueError(f"item_affinity is {item_affinity.shape}; the bundle has {self.n} items")
        self.item_affinity = item_affinity  # (n, n) item-to-item weights, or None
        self.trending: np.ndarray | None = None
        if recent_popularity is not None and len(recent_popularity) == self.n and np.any(recent_popularity > 0):
            pop = self.fallback.popular.popularity
            self.trending = np.lexsort((-np.asarray(pop), -np.asarray(recent_popularity))).astype(np.int64)
            self.trending_scores = np.asarray(recent_popularity, dtype=np.float32) / max(
                float(np.max(recent_popularity)), 1.0
            )
        # Newest releases first, popularity breaking ties.
        self.newest = np.lexsort((-self.fallback.popular.popularity, -catalogue.years.astype(np.int64)))
        self.newest = self.newest[catalogue.years[self.newest] > 0]
        self._id_list = [str(i) for i in self.fallback.item_ids.tolist()]
        self._id_array = np.asarray(self._id_list, dtype=object)  # rows -> the same str objects, vectorised
        # Each user's affinity totals over their bundle history: fixed for this bundle, so computed once per
        # user (bounded; least recently used first out). A heavy user's totals cost ~0.5 ms to recompute.
        self._history_totals: OrderedDict[str, np.ndarray] = OrderedDict()
        self._history_totals_lock = threading.Lock()
        self._warm_history_totals()
        self.live = LiveItems.empty(self.n, self.dim)
        self._admin_lock = threading.Lock()

    # --- loading ------------------------------------------------------------------------------------------

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        feature_repo: Path,
        settings: CandidateSettings | None = None,
        read_features: ItemFeatureReader | None = None,
    ) -> Retriever:
        """Loads the retrieval arrays, the optional towers and segments, and the catalogue (genres for filters,
        years for fresh items, recent popularity for trending) for the bundle's items."""
        settings = settings or CandidateSettings()
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        item_ids = arrays["item_ids"].astype(str).tolist()
        features = (read_features or read_item_features)(feature_repo, item_ids)
        catalogue = Catalogue.from_features(item_ids, dict(features))
        recent = features.get("recent_popularity")
        recent_pop = np.asarray([r or 0 for r in recent], dtype=np.float32) if recent is not None else None
        if "recent_popularity" in arrays:  # the bundle's own count, aligned with its items, wins
            recent_pop = np.asarray(arrays["recent_popularity"], dtype=np.float32)
        components = bundle.manifest.components
        query_tower = item_tower = None
        segments = None
        if QUERY_TOWER_COMPONENT in components:
            contract = bundle.contract(QUERY_TOWER_COMPONENT)
            query_tower = QueryTower(bundle.component(QUERY_TOWER_COMPONENT), contract, settings.query_threads)
        if ITEM_TOWER_COMPONENT in components:
            contract = bundle.contract(ITEM_TOWER_COMPONENT)
            item_tower = ItemTower(bundle.component(ITEM_TOWER_COMPONENT), contract, settings.query_threads)
        if SEGMENTS_COMPONENT in components:
            segments = Segments.from_arrays(bundle.load_arrays(SEGMENTS_COMPONENT))
        shipped_index = None
        if INDEX_COMPONENT in components:
            shipped_index = (bundle.component(INDEX_COMPONENT), bundle.contract(INDEX_COMPONENT).get("index", {}))
        affinity = None
        if AFFINITY_COMPONENT in components:
            weights = bundle.load_arrays(AFFINITY_COMPONENT, AFFINITY_CONTRACT)
            if weights["item_ids"].astype(str).tolist() != item_ids:
                raise ValueError(f"bundle {bundle.version}: item_affinity items differ from the retrieval items")
            affinity = np.ascontiguousarray(weights["weights"], dtype=np.float32)
        return cls(
            bundle.version,
            arrays,
            catalogue,
            settings,
            contract=bundle.contract(RETRIEVAL_COMPONENT),
            query_tower=query_tower,
            item_tower=item_tower,
            segments=segments,
            recent_popularity=recent_pop,
            item_affinity=affinity,
            shipped_index=shipped_index,
        )

    # --- rows and ids -------------------------------------------------------------------------------------

    @property
    def item_pos(self) -> dict[str, int]:
        """Bundle item id -> bundle row (the trained catalogue; see `row_of` for the live one)."""
        return self.fallback.item_pos

    def row_of(self, item_id: str, live: LiveItems | None = None) -> int | None:
        """The live global row of an item (bundle rows, then runtime rows from n); None when not live."""
        live = live or self.live
        delta = live.delta_pos.get(item_id)
        if delta is not None:
            return self.n + delta
        if item_id in live.removed:
            return None
        row = self.fallback.item_pos.get(item_id)
        if row is None or live.main_gone[row]:
            return None
        return row

    def ids_of(self, rows: np.ndarray, live: LiveItems) -> list[str]:
        if not len(rows) or rows.max() < self.n:  # the usual case: bundle items only
            ids: list[str] = self._id_array[rows].tolist()
            return ids
        return [self._id_list[r] if r < self.n else live.delta_ids[r - self.n] for r in rows.tolist()]

    def _rows(self, item_ids: Sequence[str], live: LiveItems) -> np.ndarray:
        rows = (self.row_of(i, live) for i in item_ids)
        return np.fromiter((r for r in rows if r is not None), dtype=np.int64)

    # --- filters ------------------------------------------------------------------------------------------

    def _build_masks(self, key: FilterKey, live: LiveItems) -> FilterMasks:
        include, exclude = key
        c = self.catalogue
        main = ~live.main_gone
        delta = live.delta_alive.copy()
        if include:
            bits = c.genre_bits(include)
            main &= (c.genre_mask & bits) != 0
            delta &= (live.delta_genre_mask & bits) != 0
        if exclude:
            bits = c.genre_bits(exclude)
            main &= (c.genre_mask & bits) == 0
            delta &= (live.delta_genre_mask & bits) == 0
        return FilterMasks(main, delta)

    def masks(self, query: RetrievalQuery, live: LiveItems, recent_rows: np.ndarray) -> FilterMasks:
        """This request's allowed rows: the cached genre filter minus seen, recent and excluded items."""
        check_genres(self.catalogue, [*query.include_genres, *query.exclude_genres])
        key = (tuple(sorted(set(query.include_genres))), tuple(sorted(set(query.exclude_genres))))
        base = live.cached_masks(key, lambda k: self._build_masks(k, live))
        main, delta = base.main.copy(), base.delta.copy()
        seen = self.fallback.seen.rows(query.user_id)
        if live.delta_pos and len(seen):
            # A seen item whose content was replaced at runtime is still seen under its new row.
            replaced = (live.delta_pos.get(self._id_list[r]) for r in seen[live.main_gone[seen]].tolist())
            seen = np.concatenate([seen, np.fromiter((self.n + d for d in replaced if d is not None), np.int64)])
        excluded = np.concatenate([seen, recent_rows, self._rows(query.exclude_item_ids, live)])
        main[excluded[excluded < self.n]] = False
        delta[excluded[excluded >= self.n] - self.n] = False
        return FilterMasks(main, delta)

    # --- search over bundle rows + runtime rows -----------------------------------------------------------

    def _search(
        self,
        index: AnnIndex,
        delta_vectors: np.ndarray,
        queries: np.ndarray,
        k: int,
        masks: FilterMasks,
        effort: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k global rows and scores per query over the live items that pass `masks` (-1 padded)."""
        q = np.atleast_2d(queries).astype(np.float32)
        rows, scores = index.search(q, k, masks.filter, self.settings.exact_filter_max_rows, effort)
        return self._with_delta(rows, scores, q, delta_vectors, k, masks)

    def _with_delta(
        self,
        rows: np.ndarray,
        scores: np.ndarray,
        q: np.ndarray,
        delta_vectors: np.ndarray,
        k: int,
        masks: FilterMasks,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The bundle rows' top-k per query merged with the allowed runtime rows' (-1 padded)."""
        d_rows = np.flatnonzero(masks.delta)
        if not len(d_rows):
            return rows, scores
        d_scores = q @ delta_vectors[d_rows].T
        all_rows = np.concatenate([rows, np.broadcast_to(d_rows + self.n, (len(q), len(d_rows)))], axis=1)
        all_scores = np.concatenate([np.where(rows >= 0, scores, -np.inf), d_scores], axis=1)
        best, best_scores = top_k_rows(all_scores, k)
        found = np.isfinite(best_scores)  # -inf marks the bundle search's padding
        out_rows = np.where(found, np.take_along_axis(all_rows, best, axis=1), -1)
        return out_rows, np.where(found, best_scores, 0.0).astype(np.float32)

    def _item_neighbours(
        self, rows: np.ndarray, k: int, masks: FilterMasks, live: LiveItems
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k allowed neighbours of each item (global rows): from the neighbour table when it holds them
        for bundle items, else by searching the similarity index."""
        table = self.neighbour_table
        if table is not None and len(rows) and int(rows.max()) < self.n:
            found = table.lookup(rows, k, masks.main)
            if found is not None:
                if not masks.delta.any():
                    return found
                queries = self._similarity_vectors(rows, live)
                return self._with_delta(*found, queries, self._delta_similarity(live), k, masks)
        queries = self._similarity_vectors(rows, live)
        effort = self.settings.item_query_effort
        return self._search(self.similarity, self._delta_similarity(live), queries, k, masks, effort)

    def _similarity_vectors(self, rows: np.ndarray, live: LiveItems) -> np.ndarray:
        main = rows[rows < self.n]
        out = np.empty((len(rows), self.similarity.dim), dtype=np.float32)
        out[rows < self.n] = self.similarity.vectors[main]
        if (rows >= self.n).any():
            out[rows >= self.n] = self._delta_similarity(live)[rows[rows >= self.n] - self.n]
        return out

    def _delta_similarity(self, live: LiveItems) -> np.ndarray:
        if not self.has_bias:
            return live.delta_vectors
        return _normalised(live.delta_vectors[:, :-1]) if live.n_delta else np.zeros((0, self.dim - 1), np.float32)

    # --- the sources --------------------------------------------------------------------------------------

    def query_vector(self, query: RetrievalQuery, recent_rows: np.ndarray) -> np.ndarray | None:
        """The user's query vector, or None when there is nothing to personalise on."""
        user_pos = self.fallback.seen.user_pos.get(query.user_id)
        tower = self.query_tower
        features = query.user_features
        has_demographics = features is not None and bool(features.gender or features.occupation or features.age_bucket)
        if tower is not None and (len(recent_rows) or user_pos is not None or has_demographics):
            model_rows = recent_rows[recent_rows < self.n]  # runtime items are unknown to the history encoder
            if not len(model_rows) and user_pos is not None:
                return self.user_vectors[user_pos]  # nothing fresh: the precomputed vector saw the same history
            return tower.encode(
                user_pos if user_pos is not None else tower.UNKNOWN_USER,
                tower.demographics(features if has_demographics else None),
                tower.context(query.request_time, query.device),
                model_rows.tolist(),
            )
        if user_pos is not None:
            return self.user_vectors[user_pos]
        return None

    def retrieve(self, query: RetrievalQuery, probe: Callable[[AnnProbe], None] | None = None) -> Candidates:
        """Candidates from every source, merged; `probe` (when given) receives the ANN query for the recall
        monitor."""
        live = self.live
        s = self.settings
        recent_rows = self._rows(query.recent_item_ids, live)
        masks = self.masks(query, live, recent_rows)
        count = query.count
        lists: list[SourceList] = []
        vector = self.query_vector(query, recent_rows)
        known = query.user_id in self.fallback.seen.user_pos

        if vector is not None and s.quota_embedding > 0:
            rows, scores = self._search(self.index, live.delta_vectors, vector, count, masks)
            keep = rows[0] >= 0
            lists.append(SourceList(SOURCE_EMBEDDING, rows[0][keep], scores[0][keep], s.quota_embedding))
            if probe is not None and not self.index.exact:
                main_rows = rows[0][keep]
                probe(AnnProbe(vector.copy(), masks.main, main_rows[main_rows < self.n], count))

        if len(recent_rows) and (s.quota_neighbours > 0 or vector is None):
            lists.append(self._neighbours(recent_rows[: s.neighbour_history_items], count, masks, live, vector is None))

        # One pass over the weights serves both the source and every candidate's affinity in the answer.
        totals = self.history_totals(query.user_id, recent_rows)
        if totals is not None and s.quota_affinity > 0:
            lists.append(self._affinity_source(totals, masks, count))

        # A user with no history of their own (new to the model, nothing recent) leans on their segment.
        segment_list = None if known or len(recent_rows) else self._segment_source(query, vector, masks, count)
        if segment_list is not None:
            lists.append(segment_list)

        if s.quota_fresh > 0 and vector is not None:
            lists.append(self._fresh(masks, live, math.ceil(count * s.quota_fresh) + 1))

        # The fillers (quota 0) take only what the sources above leave empty, so they are not needed when one
        # of those alone already holds `count` distinct items.
        if max((len(x.rows) for x in lists), default=0) < count:
            lists.extend(self._fillers(masks, live, count))

        rows, scores, sources = merge(lists, count, self.n + live.n_delta)
        return Candidates(
            item_ids=self.ids_of(rows, live),
            scores=scores,
            sources=sources,  # type: ignore[arg-type]
            cold_start=not known and not len(recent_rows) and vector is None,
            affinity=self._affinity_of(totals, rows),
        )

    def _fillers(self, masks: FilterMasks, live: LiveItems, count: int) -> list[SourceList]:
        """Trending (with cold_start_source=trending), then popular, then runtime items: what fills an answer
        the other sources leave short, and the whole answer for a cold-start user."""
        out = []
        if self.settings.cold_start_source == "trending" and self.trending is not None:
            rows = first_allowed(self.trending, masks.main, count)
            out.append(SourceList(SOURCE_TRENDING, rows, self.trending_scores[rows], 0.0))
        pop = self.fallback.popular
        pop_rows = first_allowed(pop.order, masks.main, count)
        top = max(int(pop.popularity[pop.order[0]]), 1) if len(pop.order) else 1
        out.append(SourceList(SOURCE_POPULAR, pop_rows, (pop.popularity[pop_rows] / top).astype(np.float32), 0.0))
        if live.n_delta and len(pop_rows) < count:
            # Runtime items have no interactions yet: they come after every popular bundle item.
            extra = np.flatnonzero(masks.delta)[::-1] + self.n
            out.append(SourceList(SOURCE_POPULAR, extra, np.zeros(len(extra), dtype=np.float32), 0.0))
        return out

    def warm_up(self) -> None:
        """A known user's and a cold user's request, so that the first real ones do not pay the query tower's
        first onnxruntime run (~10 ms) and the first calls of each search path."""
        count = min(500, self.n)
        # A user whose history totals are cached already, so that the totals cache keeps its users and order.
        with self._history_totals_lock:
            cached = next(reversed(self._history_totals), None)
        known = cached if cached is not None else next(iter(self.fallback.seen.user_pos), None)
        recent = self._id_list[:3]
        for user in ([known] if known is not None else []) + [""]:
            self.retrieve(RetrievalQuery(user, recent, count))
            self.retrieve(RetrievalQuery(user, [], count))

    def history_totals(self, user_id: str, recent_rows: np.ndarray) -> np.ndarray | None:
        """Every bundle item's item-to-item affinity with the user's whole history (the bundle's training
        interactions plus the fresh recent items): sum over history items h of W[h, item]. None without the
        item_affinity component or without history."""
        weights = self.item_affinity
        if weights is None:
            return None
        seen = self.fallback.seen.rows(user_id)
        fresh = recent_rows[recent_rows < self.n]
        if len(fresh) and len(seen):
            # np.setdiff1d sorts both sides (~70 us at MovieLens size); a scratch mask over the rows is ~5 us.
            in_seen = np.zeros(self.n, dtype=bool)
            in_seen[seen] = True
            fresh = fresh[~in_seen[fresh]]
        if len(fresh) > 1:
            fresh = np.unique(fresh)  # a repeated fresh item counts once, as it does in the bundle history
        if not len(seen) and not len(fresh):
            return None
        base = self._bundle_history_totals(user_id, seen) if len(seen) else None
        if not len(fresh):
            return base
        extra = self._sum_rows(fresh)
        return extra if base is None else base + extra

    def _warm_history_totals(self) -> None:
        """Fills the totals cache at load for the users with the longest histories (as many as it holds), so a
        bundle's known users do not pay a miss on their first request (up to ~0.5 ms for a heavy user's history
        against every item). Computed as a miss computes them; ~0.3 s for MovieLens' 943 users."""
        seen, limit = self.fallback.seen, self.settings.affinity_cache_users
        if self.item_affinity is None or limit <= 0:
            return
        lengths = np.diff(seen.indptr)
        users = sorted(seen.user_pos, key=lambda u: -int(lengths[seen.user_pos[u]]))[:limit]
        # Inserted lightest first: the least recently used end is evicted first, and those are the cheapest.
        for user in reversed(users):
            rows = seen.rows(user)
            if len(rows):
                self._bundle_history_totals(user, rows)

    def _bundle_history_totals(self, user_id: str, seen: np.ndarray) -> np.ndarray:
        cache, limit = self._history_totals, self.settings.affinity_cache_users
        with self._history_totals_lock:
            totals = cache.get(user_id)
            if totals is not None:
                cache.move_to_end(user_id)
                return totals
        totals = self._sum_rows(seen)
        totals.flags.writeable = False  # shared between requests
        if limit > 0:
            with self._history_totals_lock:
                cache[user_id] = totals
                while len(cache) > limit:
                    cache.popitem(last=False)
        return totals

    def _sum_rows(self, rows: np.ndarray) -> np.ndarray:
        """sum_r W[r, :]. Summing the rows reads |rows| x n floats; one matrix-vector product reads all n x n.
        Measured here at 1,682 items: 0.05 ms against 0.18 ms for 100 rows, and the product wins from about
        n/4 rows (heavy users). A 2-D fancy index (np.ix_) was 3 ms at 700."""
        weights = self.item_affinity
        assert weights is not None
        if len(rows) * 4 <= self.n:
            totals: np.ndarray = weights[rows].sum(axis=0)
            return totals
        indicator = np.zeros(self.n, dtype=np.float32)
        indicator[rows] = 1.0
        return indicator @ weights

    def _affinity_of(self, totals: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
        """`totals` (see `history_totals`) of each of `rows`. None without the item_affinity component; 0 for
        runtime items (the weights do not know them) and for users without history."""
        if self.item_affinity is None:
            return None
        out = np.zeros(len(rows), dtype=np.float32)
        if totals is not None:
            main = rows < self.n
            out[main] = totals[rows[main]]
        return out

    def _affinity_source(self, totals: np.ndarray, masks: FilterMasks, count: int) -> SourceList:
        """The allowed bundle items with the highest history affinity, best first."""
        quota = self.settings.quota_affinity
        limit = min(math.ceil(count * quota) * 2, self.n)
        scores = np.where(masks.main, totals, -np.inf).astype(np.float32)
        best = top_k(scores, limit)
        best = best[np.isfinite(scores[best])]
        return SourceList(SOURCE_AFFINITY, best.astype(np.int64), scores[best], quota)

    def _neighbours(
        self, rows: np.ndarray, count: int, masks: FilterMasks, live: LiveItems, only_source: bool
    ) -> SourceList:
        """Neighbours of each recent item, interleaved (the most recent item's best first)."""
        s = self.settings
        share = 1.0 if only_source else s.quota_neighbours
        per_item = count if only_source else max(math.ceil(count * share / len(rows)) * 2, 10)
        found, scores = self._item_neighbours(rows, per_item, masks, live)
        flat_rows, flat_scores = found.T.reshape(-1), scores.T.reshape(-1)
        keep = flat_rows >= 0
        rows, vals = first_occurrences(flat_rows[keep], flat_scores[keep])
        return SourceList(SOURCE_NEIGHBOURS, rows, vals, share)

    def _segment_source(
        self, query: RetrievalQuery, vector: np.ndarray | None, masks: FilterMasks, count: int
    ) -> SourceList | None:
        quota = self.settings.quota_segment
        if quota <= 0:
            return None
        limit = math.ceil(count * quota) * 2
        if self.segments is not None:
            features = query.user_features
            assigned = (
                features.segment
                if features is not None
                and features.HasField("segment")
                and features.segment_bundle_version == self.version
                else None
            )  # a segment id means something only in the bundle whose k-means assigned it
            segment = self.segments.segment_of(query.user_id, vector, assigned)
            if segment is not None:
                order = self.segments.popular[segment]
                order = order[(order >= 0) & (order < self.n)]
                rows = first_allowed(order, masks.main, limit)
                return SourceList(SOURCE_SEGMENT, rows, _rank_scores(len(rows)), quota)
        if self.trending is not None and vector is not None:
            rows = first_allowed(self.trending, masks.main, limit)
            return SourceList(SOURCE_TRENDING, rows, self.trending_scores[rows], quota)
        return None

    def _fresh(self, masks: FilterMasks, live: LiveItems, limit: int) -> SourceList:
        runtime = np.flatnonzero(masks.delta)[::-1][:limit] + self.n  # the latest additions first
        newest = first_allowed(self.newest, masks.main, max(limit - len(runtime), 0))
        rows = np.concatenate([runtime, newest]).astype(np.int64)
        return SourceList(SOURCE_FRESH, rows, _rank_scores(len(rows)), self.settings.quota_fresh)

    # --- similar items ------------------------------------------------------------------------------------

    def similar_items(self, item_id: str, count: int) -> tuple[list[str], np.ndarray]:
        live = self.live
        row = self.row_of(item_id, live)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue (bundle {self.version})")
        masks = FilterMasks(~live.main_gone, live.delta_alive.copy())
        if row < self.n:
            masks.main[row] = False
        else:
            masks.delta[row - self.n] = False
        rows, scores = self._item_neighbours(np.array([row]), count, masks, live)
        keep = rows[0] >= 0
        return self.ids_of(rows[0][keep], live), scores[0][keep].astype(np.float32)

    # --- runtime catalogue changes ------------------------------------------------------------------------

    def embed(self, items: Sequence[ItemContent]) -> np.ndarray:
        """Vectors of `items`: given embeddings as they are, the rest from the item tower."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        need = [i for i, item in enumerate(items) if not item.embedding]
        for i, item in enumerate(items):
            if item.embedding:
                out[i] = np.asarray(item.embedding, dtype=np.float32)
        if need:
            if self.item_tower is None:
                raise ValueError(f"bundle {self.version} has no item tower: give each item its embedding")
            chosen = [items[i] for i in need]
            # A trained item keeps its id embedding (row + 1); a new one is embedded from content alone (0).
            ids = [self.fallback.item_pos.get(item.item_id, -1) + 1 for item in chosen]
            out[need] = self.item_tower.embed(ids, [c.title for c in chosen], [c.year for c in chosen],
                                              [list(c.genres) for c in chosen])  # fmt: skip
        return out

    def upsert(self, items: Sequence[ItemContent]) -> tuple[int, int]:
        """Makes `items` live with new content and vectors; (added, updated)."""
        vectors = self.embed(items)
        bits = np.array([self.catalogue.genre_bits(list(i.genres)) for i in items], dtype=np.uint64)
        with self._admin_lock:
            live = self.live
            main_rows = [self.fallback.item_pos.get(i.item_id) for i in items]
            updated = sum(self.row_of(i.item_id, live) is not None for i in items)
            self.live = live.with_upserts(items, vectors, main_rows, bits)
        return len(items) - updated, updated

    def remove(self, item_ids: Sequence[str]) -> tuple[int, int]:
        """Takes `item_ids` out of every source; (removed, already removed)."""
        with self._admin_lock:
            live = self.live
            present = [i for i in item_ids if self.row_of(i, live) is not None]
            main_rows = [self.fallback.item_pos.get(i) for i in item_ids]
            self.live = live.with_removals(list(item_ids), main_rows)
        return len(present), len(item_ids) - len(present)

    def knows(self, item_id: str) -> bool:
        """Whether the id was ever in this catalogue (bundle or runtime), removed or not."""
        live = self.live
        return item_id in self.fallback.item_pos or item_id in live.delta_pos or item_id in live.removed

    def describe(self) -> dict[str, Any]:
        return {
            "bundle": self.version,
            "items": self.n,
            "live_items": self.live.size,
            "runtime_items": len(self.live.delta_pos),
            "dim": self.dim,
            "index": self.spec.describe(),
            "index_from_bundle": self.index.loaded,
            "query_tower": self.query_tower is not None,
            "item_tower": self.item_tower is not None,
            "segments": self.segments is not None,
            "neighbour_table_width": self.neighbour_table.width if self.neighbour_table is not None else 0,
        }
