"""The rerank core: diversity over item embeddings and explanations, for one bundle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.bundle import Bundle
from services.common.catalogue import Catalogue
from services.common.errors import InvalidArgument
from services.common.retrieval_data import RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT
from services.rerank.diversity import mmr
from services.rerank.explain import reasons


@dataclass(frozen=True)
class Reranked:
    positions: np.ndarray  # into the request's candidate arrays
    scores: np.ndarray
    reasons: list[str]


class Reranker:
    def __init__(self, version: str, item_ids: Sequence[str], embeddings: np.ndarray, titles: Sequence[str]) -> None:
        self.version = version
        self.item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.titles = list(titles)

    @classmethod
    def from_bundle(cls, bundle: Bundle, feature_repo: Path) -> Reranker:
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        item_ids = arrays["item_ids"].tolist()
        catalogue = Catalogue.load(feature_repo, item_ids)
        # The item factors without the bias column: the space in which "similar" is measured.
        return cls(bundle.version, item_ids, arrays["item_vectors"][:, :-1], catalogue.titles)

    def rows(self, field: str, item_ids: Sequence[str]) -> np.ndarray:
        rows = np.fromiter((self.item_pos.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        if (rows < 0).any():
            unknown = [item_ids[i] for i in np.flatnonzero(rows < 0)[:5]]
            raise InvalidArgument(f"{field} unknown to rerank bundle {self.version}: {', '.join(unknown)}")
        return rows

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
        rows = self.rows("item_ids", item_ids)
        emb = self.embeddings[rows]
        positions, values = mmr(scores, emb, count, diversity)
        why: list[str] = [""] * len(positions)
        if explain:
            known_history = [i for i in history_item_ids if i in self.item_pos]
            h_rows = np.fromiter((self.item_pos[i] for i in known_history), dtype=np.int64)
            why = reasons(positions, emb[positions], sources, self.embeddings[h_rows], [self.titles[r] for r in h_rows])
        return Reranked(positions=positions, scores=values, reasons=why)
