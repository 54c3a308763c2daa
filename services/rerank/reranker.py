"""The rerank core: diversity over item embeddings and explanations, for one bundle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.bundle import Bundle
from services.common.catalogue import Catalogue
from services.common.retrieval_data import (
    RETRIEVAL_COMPONENT,
    RETRIEVAL_CONTRACT,
    known_rows,
    normalised_item_factors,
)
from services.rerank.diversity import mmr
from services.rerank.explain import reasons


@dataclass(frozen=True)
class Reranked:
    positions: np.ndarray  # into the request's candidate arrays
    scores: np.ndarray
    reasons: list[str]


class Reranker:
    def __init__(self, version: str, item_ids: Sequence[str], embeddings: np.ndarray, titles: Sequence[str]) -> None:
        """`embeddings`: (n, d) L2-normalised item embeddings aligned with `item_ids`."""
        self.version = version
        self.item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
        self.embeddings = embeddings
        self.titles = list(titles)

    @classmethod
    def from_bundle(cls, bundle: Bundle, feature_repo: Path) -> Reranker:
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        item_ids = arrays["item_ids"].tolist()
        catalogue = Catalogue.load(feature_repo, item_ids)
        return cls(bundle.version, item_ids, normalised_item_factors(arrays["item_vectors"]), catalogue.titles)

    def rerank(
        self,
        item_ids: Sequence[str],
        scores: np.ndarray,
        sources: Sequence[int],
        count: int,
        diversity: float,
        explain: bool,
        history_item_ids: Sequence[str],
    ) -> Reranked:
        rows = known_rows(self.item_pos, item_ids, f"item_ids unknown to rerank bundle {self.version}")
        emb = self.embeddings[rows]
        positions, values = mmr(scores, emb, count, diversity)
        why: list[str] = [""] * len(positions)
        if explain:
            known_history = [i for i in history_item_ids if i in self.item_pos]
            h_rows = np.fromiter((self.item_pos[i] for i in known_history), dtype=np.int64)
            why = reasons(positions, emb[positions], sources, self.embeddings[h_rows], [self.titles[r] for r in h_rows])
        return Reranked(positions=positions, scores=values, reasons=why)
