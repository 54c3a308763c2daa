"""The rerank core, for one bundle: graph affinity and the candidate stage's item-to-item affinity blended into
the ranking score, business rules, diversity
(MMR, DPP, or calibration towards the genre mix of the user's history) and explanations.

Order of operations per request, all vectorised over the N candidates: scale the ranking scores to [0, 1];
blend in the user's graph affinity (LightGCN embeddings, when the bundle has them); apply boosts; drop blocked
items; reserve pinned positions and exploration slots; pick the rest with the diversity method under the genre
caps (relaxed only when the caps would leave the list short); assemble. Same inputs, same answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from artifacts.bundle import GRAPH_COMPONENT, RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT, Bundle
from recsys.common.v1 import common_pb2
from services.common.catalogue import Catalogue, ItemFeatureReader
from services.common.retrieval_data import has_bias_column, known_rows, normalised_item_factors
from services.rerank.diversity import calibrated, dpp, genre_distributions, mmr, scaled
from services.rerank.explain import EXPLORATION_REASON, PINNED_REASON, reasons
from services.rerank.rules import BusinessRules, CompiledRules, compile_rules


class DiversityMethod(StrEnum):
    MMR = "mmr"
    DPP = "dpp"
    CALIBRATED = "calibrated"  # the list's genre mix follows the user's history (the strength is `diversity`)

    @property
    def proto(self) -> common_pb2.DiversityMethod:
        """The `common.v1.DiversityMethod` value of the same name."""
        value: common_pb2.DiversityMethod = getattr(common_pb2, f"DIVERSITY_METHOD_{self.name}")
        return value


@dataclass(frozen=True)
class GraphEmbeddings:
    """User and item embeddings of the graph model; affinity is their inner product."""

    user_pos: dict[str, int]
    users: np.ndarray  # (n_users, d)
    items: np.ndarray  # (n_items, d), aligned with the reranker's items


@dataclass(frozen=True)
class Reranked:
    positions: np.ndarray  # into the request's candidate arrays
    scores: np.ndarray
    reasons: list[str]


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
            self.rerank(items, scores, [], min(20, len(items)), 0.2, True, items[:3], user, method, graph_weight,
                        affinity, affinity_weight)  # fmt: skip

    def rerank(
        self,
        item_ids: Sequence[str],
        scores: np.ndarray,
        sources: Sequence[int],
        count: int,
        diversity: float,
        explain: bool,
        history_item_ids: Sequence[str],
        user_id: str = "",
        method: DiversityMethod = DiversityMethod.MMR,
        graph_weight: float = 0.0,
        item_affinity: np.ndarray | None = None,
        affinity_weight: float = 0.0,
    ) -> Reranked:
        """`item_affinity`: the candidate stage's history affinity per candidate (None: not blended)."""
        rows = known_rows(self.item_pos, item_ids, f"item_ids unknown to rerank bundle {self.version}")
        emb = self.embeddings[rows]
        rel = self.relevance(user_id, rows, scores, graph_weight, item_affinity, affinity_weight)
        rules = self.rules
        open_ = ~rules.blocked[rows]
        target = min(count, int(open_.sum()))

        # Reserved positions: pins (when the pinned item is a candidate) and exploration slots.
        # (A per-candidate dict, so only built when there are pins: no Python loop over candidates otherwise.)
        candidate_of_row = {int(r): i for i, r in enumerate(rows)} if rules.pins else {}
        pinned = {
            position: candidate_of_row[row]
            for row, position in rules.pins
            if position < target and row in candidate_of_row and open_[candidate_of_row[row]]
        }
        for c in pinned.values():
            open_[c] = False
        slots = [s for s in rules.exploration_slots(target) if s not in pinned]

        # The main picks, under the genre caps.
        flags = rules.genre_flags[rows]
        taken = np.zeros(len(rules.caps), dtype=np.int64)
        for c in pinned.values():
            taken += flags[c]

        def cap(pick: int, available: np.ndarray) -> None:
            nonlocal taken
            taken += flags[pick]
            full = taken >= rules.caps
            if full.any():
                available &= ~flags[:, full].any(axis=1)

        available = open_ & ~flags[:, taken >= rules.caps].any(axis=1)
        # Exploration candidates are set aside first so the main picks do not consume them all.
        explore = self._exploration_picks(rows, rel, available, len(slots))
        available[explore] = False
        main_count = target - len(pinned) - len(explore)
        on_pick = cap if len(rules.caps) else None
        if method == DiversityMethod.CALIBRATED:
            history = [self.item_pos[i] for i in history_item_ids if i in self.item_pos]
            mix = self.genre_mix[history].mean(axis=0) if history else np.zeros(self.genre_mix.shape[1])
            picks, values = calibrated(rel, self.genre_mix[rows], mix, main_count, diversity, available, on_pick)
        else:
            select = dpp if method == DiversityMethod.DPP else mmr
            picks, values = select(rel, emb, main_count, diversity, available, on_pick)
        if len(picks) < main_count:  # the caps left the list short: fill by relevance, caps relaxed
            rest = open_.copy()
            rest[picks] = False
            rest[explore] = False
            extra = np.flatnonzero(rest)[np.argsort(-rel[rest], kind="stable")][: main_count - len(picks)]
            picks = np.concatenate([picks, extra])
            values = np.concatenate([values, rel[extra].astype(np.float32)])

        positions = np.empty(len(pinned) + len(explore) + len(picks), dtype=np.int64)
        final = np.empty(len(positions), dtype=np.float32)
        kind = np.zeros(len(positions), dtype=np.int8)  # 0 main, 1 pinned, 2 exploration
        fixed = {
            **{p: (c, 1) for p, c in pinned.items()},
            **dict(zip(slots, ((int(c), 2) for c in explore), strict=False)),
        }
        main_iter = iter(zip(picks.tolist(), values.tolist(), strict=True))
        for p in range(len(positions)):
            if p in fixed:
                c, k = fixed[p]
                positions[p], final[p], kind[p] = c, rel[c], k
            else:
                c, v = next(main_iter)
                positions[p], final[p] = c, v
        final = np.minimum.accumulate(final)  # scores descend with the position

        why: list[str] = [""] * len(positions)
        if explain:
            known_history = [i for i in history_item_ids if i in self.item_pos]
            h_rows = np.fromiter((self.item_pos[i] for i in known_history), dtype=np.int64)
            why = reasons(positions, emb[positions], sources, self.embeddings[h_rows], [self.titles[r] for r in h_rows])
            for slot in np.flatnonzero(kind).tolist():
                why[slot] = PINNED_REASON if kind[slot] == 1 else EXPLORATION_REASON
        return Reranked(positions=positions, scores=final, reasons=why)

    def _exploration_picks(self, rows: np.ndarray, rel: np.ndarray, available: np.ndarray, n: int) -> np.ndarray:
        """The n most relevant long-tail candidates still available."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        pool = available & self.rules.long_tail[rows]
        return np.flatnonzero(pool)[np.argsort(-rel[pool], kind="stable")][:n]
