"""The candidate generation core: no gRPC here, only arrays in and arrays out.

`Retriever` composes, once per bundle, the parts a request goes through: its ids as rows (rows.py), its
allowed rows (filters.py), the user's query vector and the candidate sources (sources/), their merge with
quotas and provenance (sources/merge.py), and the runtime catalogue changes on top (live_catalogue.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.ann_index import AnnIndex, IndexSpec
from artifacts.bundle import Bundle
from services.candidate.bundle_parts import BundleParts
from services.candidate.filters import RequestFilters
from services.candidate.history_totals import HistoryTotals
from services.candidate.live import ItemContent, LiveItems
from services.candidate.live_catalogue import LiveCatalogue
from services.candidate.query import AnnProbe, Candidates, RetrievalQuery
from services.candidate.rows import ItemRows
from services.candidate.search import ItemSearch, build_index
from services.candidate.settings import CandidateSettings
from services.candidate.sources.affinity import AffinitySource
from services.candidate.sources.base import CandidateSource, SourceList, SourceRequest
from services.candidate.sources.embedding import EmbeddingSource, QueryVectors
from services.candidate.sources.fresh import FreshSource, newest_first
from services.candidate.sources.merge import merge
from services.candidate.sources.neighbours import NeighbourSource
from services.candidate.sources.popular import PopularFillers, Trending
from services.candidate.sources.segments import SegmentSource
from services.common.catalogue import ItemFeatureReader
from services.common.errors import NotFound
from services.common.retrieval_data import fallback_from_arrays, has_bias_column


class Retriever:
    """One bundle's index, embeddings, towers and source data, plus the runtime catalogue changes on top.

    Searches and admin changes are safe from several threads: the bundle part never changes and each change
    swaps one immutable `LiveItems` snapshot.
    """

    def __init__(self, parts: BundleParts, settings: CandidateSettings | None = None) -> None:
        s = self.settings = settings or CandidateSettings()
        self.version = parts.version
        self.catalogue = catalogue = parts.catalogue
        self.contract = contract = dict(parts.contract)
        self.fallback = fallback = fallback_from_arrays(dict(parts.arrays))
        if list(catalogue.item_ids) != fallback.item_ids.tolist():
            raise ValueError("the catalogue is not aligned with the bundle's items")
        self.item_vectors = np.ascontiguousarray(parts.arrays["item_vectors"], dtype=np.float32)
        self.user_vectors = np.ascontiguousarray(parts.arrays["user_vectors"], dtype=np.float32)
        self.n, self.dim = self.item_vectors.shape
        n = self.n
        index = build_index(self.version, self.item_vectors, s, contract, parts.shipped_index)
        # BPR-MF bundles carry a bias column last (user vectors hold 1.0 there); two-tower ones do not.
        self.search = ItemSearch(index, has_bias_column(contract), s)
        self.query_tower, self.item_tower, self.segments = parts.query_tower, parts.item_tower, parts.segments
        self.history: HistoryTotals | None = None  # None without item_affinity weights
        if parts.item_affinity is not None:
            self.history = HistoryTotals(parts.item_affinity, n, fallback.seen, s.affinity_cache_users)
        self.rows = ItemRows(fallback.item_ids, fallback.item_pos, n)
        self.filters = RequestFilters(catalogue, fallback.seen, self.rows)
        self.query_vectors = QueryVectors(self.user_vectors, fallback.seen.user_pos, self.query_tower, n)
        trending = Trending.from_counts(parts.recent_popularity, fallback.popular.popularity, n)
        # In merge order: earlier sources win the items several propose.
        self.sources: tuple[CandidateSource, ...] = (
            EmbeddingSource(self.search, s.quota_embedding),
            NeighbourSource(self.search, s.quota_neighbours, s.neighbour_history_items),
            AffinitySource(s.quota_affinity, n),
            SegmentSource(self.segments, trending, self.version, s.quota_segment, n),
            FreshSource(newest_first(catalogue, fallback.popular.popularity), s.quota_fresh, n),
        )
        self.fillers = PopularFillers(fallback.popular, trending if s.cold_start_source == "trending" else None, n)
        self.live_catalogue = LiveCatalogue(self.version, self.dim, self.rows, catalogue, self.item_tower)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        feature_repo: Path,
        settings: CandidateSettings | None = None,
        read_features: ItemFeatureReader | None = None,
    ) -> Retriever:
        settings = settings or CandidateSettings()
        return cls(BundleParts.load(bundle, feature_repo, settings, read_features), settings)

    @property
    def index(self) -> AnnIndex:
        return self.search.index

    @property
    def spec(self) -> IndexSpec:
        return self.search.index.spec

    @property
    def live(self) -> LiveItems:
        """The current live snapshot; a request reads one from start to finish."""
        return self.live_catalogue.current

    @property
    def item_pos(self) -> dict[str, int]:
        """Bundle item id -> bundle row (the trained catalogue; see `row_of` for the live one)."""
        return self.fallback.item_pos

    def row_of(self, item_id: str, live: LiveItems | None = None) -> int | None:
        """The live global row of an item (bundle rows, then runtime rows from n); None when not live."""
        return self.rows.row_of(item_id, live or self.live)

    # --- requests -----------------------------------------------------------------------------------------

    def retrieve(self, query: RetrievalQuery, probe: Callable[[AnnProbe], None] | None = None) -> Candidates:
        """Candidates from every source, merged; `probe` (when given) receives the ANN query for the recall
        monitor."""
        request = self._request(query, probe)
        lists = [found for source in self.sources if (found := source.propose(request)) is not None]
        # The fillers (quota 0) take only what the sources above leave empty, so they are not needed when one
        # of those alone already holds `count` distinct items.
        if max((len(x.rows) for x in lists), default=0) < query.count:
            lists.extend(self.fillers.propose(request))
        return self._answer(request, lists)

    def _request(self, query: RetrievalQuery, probe: Callable[[AnnProbe], None] | None) -> SourceRequest:
        live = self.live
        recent_rows = self.rows.rows_of(query.recent_item_ids, live)
        masks = self.filters.masks(query, live, recent_rows)
        vector = self.query_vectors.vector(query, recent_rows)
        # One pass over the weights serves both the affinity source and every candidate's affinity.
        totals = self.history.totals(query.user_id, recent_rows) if self.history is not None else None
        known = query.user_id in self.fallback.seen.user_pos
        return SourceRequest(query, live, masks, recent_rows, vector, known, totals, probe)

    def _answer(self, request: SourceRequest, lists: list[SourceList]) -> Candidates:
        live = request.live
        rows, scores, sources = merge(lists, request.count, self.n + live.n_delta)
        return Candidates(
            item_ids=self.rows.ids_of(rows, live),
            scores=scores,
            sources=sources,  # type: ignore[arg-type]
            cold_start=not request.known and not len(request.recent_rows) and request.vector is None,
            affinity=self.history.of_rows(request.totals, rows) if self.history is not None else None,
        )

    def similar_items(self, item_id: str, count: int) -> tuple[list[str], np.ndarray]:
        live = self.live
        row = self.rows.row_of(item_id, live)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue (bundle {self.version})")
        masks = self.filters.all_live_but(row, live)
        rows, scores = self.search.neighbours(np.array([row]), count, masks, live)
        keep = rows[0] >= 0
        return self.rows.ids_of(rows[0][keep], live), scores[0][keep].astype(np.float32)

    def warm_up(self) -> None:
        """A known user's and a cold user's request, so that the first real ones do not pay the query tower's
        first onnxruntime run (~10 ms) and the first calls of each search path."""
        count = min(500, self.n)
        # A user whose history totals are cached already, so that the totals cache keeps its users and order.
        cached = self.history.most_recent_user() if self.history is not None else None
        known = cached if cached is not None else next(iter(self.fallback.seen.user_pos), None)
        recent = self.rows.id_list[:3]
        for user in ([known] if known is not None else []) + [""]:
            self.retrieve(RetrievalQuery(user, recent, count))
            self.retrieve(RetrievalQuery(user, [], count))

    # --- runtime catalogue changes ------------------------------------------------------------------------

    def upsert(self, items: Sequence[ItemContent]) -> tuple[int, int]:
        """Makes `items` live with new content and vectors; (added, updated)."""
        return self.live_catalogue.upsert(items)

    def remove(self, item_ids: Sequence[str]) -> tuple[int, int]:
        """Takes `item_ids` out of every source; (removed, already removed)."""
        return self.live_catalogue.remove(item_ids)

    def knows(self, item_id: str) -> bool:
        """Whether the id was ever in this catalogue (bundle or runtime), removed or not."""
        return self.live_catalogue.knows(item_id)

    def describe(self) -> dict[str, Any]:
        table = self.search.neighbour_table
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
            "neighbour_table_width": table.width if table is not None else 0,
        }
