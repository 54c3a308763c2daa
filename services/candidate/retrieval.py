"""The candidate generation core: no gRPC here, only arrays in and arrays out.

Sources, in order of preference for a user:
  1. the user's embedding from the bundle (known user) -> CANDIDATE_SOURCE_EMBEDDING;
  2. the mean embedding of the freshest history (a user unknown to the model but with recent items)
     -> CANDIDATE_SOURCE_ITEM_NEIGHBOURS;
  3. the popular list -> CANDIDATE_SOURCE_POPULAR (cold start).
Filters and exclusions are applied inside the Faiss search (an ID selector), so a strict filter still
returns `count` items whenever that many qualify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from recsys.common.v1 import common_pb2
from services.common.bundle import Bundle
from services.common.catalogue import Catalogue
from services.common.errors import NotFound
from services.common.retrieval_data import (
    RETRIEVAL_COMPONENT,
    RETRIEVAL_CONTRACT,
    fallback_from_arrays,
    normalised_item_factors,
)

SOURCE_EMBEDDING = common_pb2.CANDIDATE_SOURCE_EMBEDDING
SOURCE_NEIGHBOURS = common_pb2.CANDIDATE_SOURCE_ITEM_NEIGHBOURS
SOURCE_POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR


@dataclass(frozen=True)
class RetrievalQuery:
    user_id: str
    recent_item_ids: Sequence[str]
    count: int
    include_genres: Sequence[str] = ()
    exclude_genres: Sequence[str] = ()
    exclude_item_ids: Sequence[str] = ()


@dataclass(frozen=True)
class Candidates:
    item_ids: list[str]
    scores: np.ndarray  # float32
    sources: list[common_pb2.CandidateSource]
    cold_start: bool


def _search(index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `index` for one query among `allowed` rows; fewer when fewer are allowed."""
    k = min(k, int(allowed.sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    bitmap = np.packbits(allowed, bitorder="little")
    params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))  # reads `bitmap` during search
    scores, rows = index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    keep = rows[0] >= 0
    return rows[0][keep], scores[0][keep]


class Retriever:
    """Holds the item index and user embeddings of one bundle; safe to call from several threads."""

    def __init__(self, version: str, arrays: dict[str, np.ndarray], catalogue: Catalogue) -> None:
        self.version = version
        self.catalogue = catalogue
        self.fallback = fallback_from_arrays(arrays)
        if list(catalogue.item_ids) != self.fallback.item_ids.tolist():
            raise ValueError("the catalogue is not aligned with the bundle's items")
        self.item_vectors = np.ascontiguousarray(arrays["item_vectors"], dtype=np.float32)
        self.user_vectors = np.ascontiguousarray(arrays["user_vectors"], dtype=np.float32)
        dim = self.item_vectors.shape[1]
        self.index = faiss.IndexFlatIP(dim)
        self.index.add(self.item_vectors)
        self.normalised_factors = normalised_item_factors(self.item_vectors)
        self.similarity_index = faiss.IndexFlatIP(self.normalised_factors.shape[1])
        self.similarity_index.add(self.normalised_factors)

    @classmethod
    def from_bundle(cls, bundle: Bundle, feature_repo: Path) -> Retriever:
        """Loads the retrieval arrays and the catalogue (genres for filters) for the bundle's items."""
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        catalogue = Catalogue.load(feature_repo, arrays["item_ids"].tolist())
        return cls(bundle.version, arrays, catalogue)

    @property
    def item_pos(self) -> dict[str, int]:
        return self.fallback.item_pos

    def retrieve(self, query: RetrievalQuery) -> Candidates:
        allowed, recent_rows = self.fallback.candidate_mask(
            self.catalogue,
            query.user_id,
            query.recent_item_ids,
            query.exclude_item_ids,
            query.include_genres,
            query.exclude_genres,
        )
        user_pos = self.fallback.seen.user_pos.get(query.user_id)
        if user_pos is not None:
            rows, scores = _search(self.index, self.user_vectors[user_pos], query.count, allowed)
            source, cold = SOURCE_EMBEDDING, False
        elif len(recent_rows):
            # A user the model has not seen yet but who just interacted: search around their history.
            vector = self.item_vectors[recent_rows].mean(axis=0)
            vector[-1] = 1.0  # the bias column, as in user vectors
            rows, scores = _search(self.index, vector, query.count, allowed)
            source, cold = SOURCE_NEIGHBOURS, False
        else:
            rows, scores = self.fallback.popular.top(allowed, query.count)
            source, cold = SOURCE_POPULAR, True
        return Candidates(
            item_ids=self.fallback.item_ids[rows].tolist(),
            scores=np.asarray(scores, dtype=np.float32),
            sources=[source] * len(rows),
            cold_start=cold,
        )

    def similar_items(self, item_id: str, count: int) -> tuple[list[str], np.ndarray]:
        row = self.item_pos.get(item_id)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue (bundle {self.version})")
        allowed = np.ones(len(self.item_pos), dtype=bool)
        allowed[row] = False
        rows, scores = _search(self.similarity_index, self.normalised_factors[row], count, allowed)
        return self.fallback.item_ids[rows].tolist(), scores.astype(np.float32)
