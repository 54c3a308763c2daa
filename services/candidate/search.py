"""Top-k search over the live items: the bundle's immutable ANN index (rows 0..n-1) merged with the runtime
items (rows from n), searched exactly; and item-to-item search, from the neighbour table where it holds the
answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.ann_index import AnnIndex, IndexSpec, NeighbourTable, choose_spec, same_index, top_k_rows
from services.candidate.live import FilterMasks, LiveItems
from services.candidate.settings import CandidateSettings
from services.common.retrieval_data import normalised_item_factors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShippedIndex:
    """The bundle's own Faiss index over its item vectors: its file and how it was built."""

    path: Path
    built_as: Mapping[str, Any]


def build_index(
    version: str, item_vectors: np.ndarray, settings: CandidateSettings, contract: Mapping[str, Any],
    shipped: ShippedIndex | None,
) -> AnnIndex:  # fmt: skip
    """The index the settings ask for: the shipped one when it is that index, else built here."""
    spec = choose_spec(len(item_vectors), settings, contract.get("index"))
    built = None
    if shipped is not None:
        if same_index(spec, shipped.built_as):
            built = AnnIndex.read(shipped.path)
        else:
            log.info("bundle %s: building a %s index (settings) instead of the shipped %s", version,
                     spec.describe(), dict(shipped.built_as))  # fmt: skip
    return AnnIndex(item_vectors, spec, settings.build_threads, built)


class ItemSearch:
    """One bundle's indexes. "Similar" is cosine over the factors without the bias for BPR-MF bundles (a bias
    column last): exact, in its own small space; two-tower bundles search their one index for both."""

    def __init__(self, index: AnnIndex, has_bias: bool, settings: CandidateSettings) -> None:
        self.index = index
        self.n, self.dim = index.n, index.dim
        self.has_bias = has_bias
        self.settings = settings
        self.similarity = AnnIndex(normalised_item_factors(index.vectors), IndexSpec("flat")) if has_bias else index
        self.neighbour_table: NeighbourTable | None = None
        if 1 < self.n <= settings.neighbour_table_max_items:
            self.neighbour_table = NeighbourTable.build(self.similarity.vectors, settings.neighbour_table_width)

    def by_vector(
        self, queries: np.ndarray, k: int, masks: FilterMasks, live: LiveItems
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k global rows and scores per query vector over the live items that pass `masks` (-1 padded)."""
        return self._search(self.index, live.delta_vectors, queries, k, masks)

    def neighbours(
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

    def _search(
        self, index: AnnIndex, delta_vectors: np.ndarray, queries: np.ndarray, k: int, masks: FilterMasks,
        effort: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        q = np.atleast_2d(queries).astype(np.float32)
        rows, scores = index.search(q, k, masks.filter, self.settings.exact_filter_max_rows, effort)
        return self._with_delta(rows, scores, q, delta_vectors, k, masks)

    def _with_delta(
        self, rows: np.ndarray, scores: np.ndarray, q: np.ndarray, delta_vectors: np.ndarray, k: int,
        masks: FilterMasks,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
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
        if not live.n_delta:
            return np.zeros((0, self.dim - 1), np.float32)
        return normalised_item_factors(live.delta_vectors)
