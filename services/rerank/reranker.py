"""The rerank core, for one bundle: graph affinity and the candidate stage's item-to-item affinity blended into
the ranking score, business rules, diversity
(MMR, DPP, or calibration towards the genre mix of the user's history) and explanations.

Order of operations per request (a `RerankQuery`), all vectorised over the N candidates: scale the ranking
scores to [0, 1]; blend in the user's graph affinity (LightGCN embeddings, when the bundle has them); apply
boosts; drop blocked items; reserve pinned positions and exploration slots (slots.py); pick the rest with the
diversity method under the genre caps (relaxed only when the caps would leave the list short); assemble
(assembly.py). Same inputs, same answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifacts.bundle import GRAPH_COMPONENT, RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT, Bundle
from services.common.catalogue import Catalogue, ItemFeatureReader
from services.common.retrieval_data import has_bias_column, known_rows, normalised_item_factors, resolve_rows
from services.rerank.assembly import EXPLORATION, PINNED, assemble, fill_by_relevance, with_slot_reasons
from services.rerank.diversity import calibrated, dpp, genre_distributions, mmr, scaled
from services.rerank.explain import reasons
from services.rerank.query import DiversityMethod, Reranked, RerankQuery
from services.rerank.rules import BusinessRules, CompiledRules, compile_rules
from services.rerank.slots import GenreCaps, exploration_picks, reserve_pins


@dataclass(frozen=True)
class GraphEmbeddings:
    """User and item embeddings of the graph model; affinity is their inner product."""

    user_pos: dict[str, int]
    users: np.ndarray  # (n_users, d)
    items: np.ndarray  # (n_items, d), aligned with the reranker's items


class Reranker:
    def __init__(
        self,
        version: str,
        item_ids: Sequence[str],
        embeddings: np.ndarray,
        titles: Sequence[str],
        genres: Sequence[Sequence[str]] | None = None,
        popularity: np.ndarray | None = None,
        rules: BusinessRules | None = None,
        graph: GraphEmbeddings | None = None,
    ) -> None:
        """`embeddings`: (n, d) L2-normalised item embeddings aligned with `item_ids` (diversity similarity)."""
        self.version = version
        self.item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
        self.embeddings = embeddings
        self.titles = list(titles)
        n = len(self.titles)
        item_genres = genres if genres is not None else [[] for _ in range(n)]
        self.rules: CompiledRules = compile_rules(
            rules or BusinessRules(),
            list(item_ids),
            item_genres,
            popularity if popularity is not None else np.zeros(n),
        )
        self.graph = graph
        self.genre_mix = genre_distributions(item_genres, sorted({g for gs in item_genres for g in gs}))

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        feature_repo: Path,
        rules: BusinessRules | None = None,
        read_features: ItemFeatureReader | None = None,
    ) -> Reranker:
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        item_ids = arrays["item_ids"].tolist()
        catalogue = Catalogue.load(feature_repo, item_ids, read_features)
        graph = None
        if GRAPH_COMPONENT in bundle.manifest.components:
            g = bundle.load_arrays(GRAPH_COMPONENT)
            if g["item_ids"].tolist() != item_ids:
                raise ValueError(f"bundle {bundle.version}: graph items differ from the retrieval items")
            graph = GraphEmbeddings(
                {u: i for i, u in enumerate(g["user_ids"].tolist())}, g["user_vectors"], g["item_vectors"]
            )
        return cls(
            bundle.version,
            item_ids,
            normalised_item_factors(arrays["item_vectors"], has_bias_column(bundle.contract(RETRIEVAL_COMPONENT))),
            catalogue.titles,
            catalogue.genres,
            arrays["popularity"],
            rules,
            graph,
        )

    def relevance(
        self,
        user_id: str,
        rows: np.ndarray,
        scores: np.ndarray,
        graph_weight: float,
        item_affinity: np.ndarray | None = None,
        affinity_weight: float = 0.0,
    ) -> np.ndarray:
        """Ranking scores scaled to [0, 1], blended with the graph affinity, then with the candidate stage's
        item-to-item affinity (when given), times the boosts."""
        rel = scaled(scores)
        if self.graph is not None and graph_weight > 0 and user_id in self.graph.user_pos:
            affinity = self.graph.items[rows] @ self.graph.users[self.graph.user_pos[user_id]]
            rel = (1.0 - graph_weight) * rel + graph_weight * scaled(affinity)
        if item_affinity is not None and affinity_weight > 0 and np.ptp(item_affinity) > 0:
            rel = (1.0 - affinity_weight) * rel + affinity_weight * scaled(item_affinity)
        return rel * self.rules.boost[rows]

    def warm_up(self, graph_weight: float, affinity_weight: float) -> None:
        """Each diversity method once over the first 200 items, with explanations, so that the first real
        requests do not pay the first calls of each path."""
        items = list(itertools.islice(self.item_pos, 200))
        if not items:
            return
        scores = np.linspace(1.0, 0.0, len(items), dtype=np.float32)
        affinity = scores[::-1].copy()  # not constant, so that the affinity blend runs too
        user = next(iter(self.graph.user_pos), "") if self.graph is not None else ""  # and the graph blend
        for method in DiversityMethod:
            self.rerank(
                RerankQuery(
                    items,
                    scores,
                    min(20, len(items)),
                    affinity=affinity,
                    diversity=0.2,
                    method=method,
                    explain=True,
                    history_item_ids=items[:3],
                    user_id=user,
                    graph_weight=graph_weight,
                    affinity_weight=affinity_weight,
                )
            )

    def rerank(self, q: RerankQuery) -> Reranked:
        rows = known_rows(self.item_pos, q.item_ids, f"item_ids unknown to rerank bundle {self.version}")
        rel = self.relevance(q.user_id, rows, q.scores, q.graph_weight, q.affinity, q.affinity_weight)
        pool = _Pool(rows, rel, self.embeddings[rows])
        open_ = ~self.rules.blocked[rows]
        target = min(q.count, int(open_.sum()))

        # Reserved positions first: pins, then exploration candidates set aside so the main picks do not consume
        # them all.
        pinned = reserve_pins(self.rules, rows, open_, target)
        caps = GenreCaps(self.rules, rows, pinned.values())
        available = caps.available(open_)
        slots = [s for s in self.rules.exploration_slots(target) if s not in pinned]
        explore = exploration_picks(self.rules, rows, rel, available, len(slots))
        available[explore] = False

        # The main picks, under the genre caps (relaxed only when they would leave the list short).
        main_count = target - len(pinned) - len(explore)
        picks, values = self._diverse(q, pool, main_count, available, caps.on_pick if len(caps.caps) else None)
        free = open_.copy()
        free[explore] = False
        picks, values = fill_by_relevance(picks, values, rel, free, main_count)

        reserved = {p: (c, PINNED) for p, c in pinned.items()}
        reserved.update({p: (int(c), EXPLORATION) for p, c in zip(slots, explore, strict=False)})
        positions, final, kind = assemble(rel, reserved, picks, values)
        why = self._reasons(q, pool, positions, kind) if q.explain else [""] * len(positions)
        return Reranked(positions=positions, scores=final, reasons=why)

    def _diverse(
        self,
        q: RerankQuery,
        pool: _Pool,
        count: int,
        available: np.ndarray,
        on_pick: Callable[[int, np.ndarray], None] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`count` picks by the query's diversity method among the `available` candidates (updated in place)."""
        if q.method == DiversityMethod.CALIBRATED:
            history = resolve_rows(self.item_pos, q.history_item_ids)
            mix = self.genre_mix[history].mean(axis=0) if len(history) else np.zeros(self.genre_mix.shape[1])
            return calibrated(pool.rel, self.genre_mix[pool.rows], mix, count, q.diversity, available, on_pick)
        select = dpp if q.method == DiversityMethod.DPP else mmr
        return select(pool.rel, pool.emb, count, q.diversity, available, on_pick)

    def _reasons(self, q: RerankQuery, pool: _Pool, positions: np.ndarray, kind: np.ndarray) -> list[str]:
        h_rows = resolve_rows(self.item_pos, q.history_item_ids)
        history_titles = [self.titles[r] for r in h_rows]
        why = reasons(positions, pool.emb[positions], q.sources, self.embeddings[h_rows], history_titles)
        return with_slot_reasons(why, kind)


@dataclass(frozen=True)
class _Pool:
    """One query's candidates as the reranker sees them."""

    rows: np.ndarray  # catalogue rows
    rel: np.ndarray  # relevance: scaled, blended and boosted
    emb: np.ndarray  # L2-normalised embeddings
