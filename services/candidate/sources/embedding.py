"""EMBEDDING: the ANN of the user's query vector, and that vector."""

from __future__ import annotations

import numpy as np

from services.candidate.query import AnnProbe, RetrievalQuery
from services.candidate.search import ItemSearch
from services.candidate.sources.base import SOURCE_EMBEDDING, SourceList, SourceRequest
from services.candidate.towers import QueryTower


class QueryVectors:
    """A user's query vector: the query tower on the request's fresh history, demographics and context when
    the bundle has one, else the bundle's precomputed user vector."""

    def __init__(self, user_vectors: np.ndarray, user_pos: dict[str, int], tower: QueryTower | None, n: int) -> None:
        self.user_vectors = user_vectors
        self.user_pos = user_pos
        self.tower = tower
        self.n = n

    def vector(self, query: RetrievalQuery, recent_rows: np.ndarray) -> np.ndarray | None:
        """The user's query vector, or None when there is nothing to personalise on."""
        user_pos = self.user_pos.get(query.user_id)
        tower = self.tower
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


class EmbeddingSource:
    def __init__(self, search: ItemSearch, quota: float) -> None:
        self.search = search
        self.quota = quota

    def propose(self, request: SourceRequest) -> SourceList | None:
        vector = request.vector
        if vector is None or self.quota <= 0:
            return None
        rows, scores = self.search.by_vector(vector, request.count, request.masks, request.live)
        keep = rows[0] >= 0
        found = SourceList(SOURCE_EMBEDDING, rows[0][keep], scores[0][keep], self.quota)
        if request.probe is not None and not self.search.index.exact:
            main_rows = found.rows[found.rows < self.search.n]
            request.probe(AnnProbe(vector.copy(), request.masks.main, main_rows, request.count))
        return found
