"""What a Retriever is built from: one bundle's retrieval arrays, its optional components, and the catalogue
of its items from the feature store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
from services.candidate.search import ShippedIndex
from services.candidate.settings import CandidateSettings
from services.candidate.sources.segments import Segments
from services.candidate.towers import ItemTower, QueryTower
from services.common.catalogue import Catalogue, ItemFeatureReader, read_item_features


@dataclass(frozen=True)
class BundleParts:
    version: str
    arrays: Mapping[str, np.ndarray]  # the retrieval component (RETRIEVAL_CONTRACT)
    catalogue: Catalogue  # aligned with arrays["item_ids"]
    contract: Mapping[str, Any] = field(default_factory=dict)  # the retrieval component's contract
    query_tower: QueryTower | None = None
    item_tower: ItemTower | None = None
    segments: Segments | None = None
    recent_popularity: np.ndarray | None = None  # per bundle item: what trending orders by
    item_affinity: np.ndarray | None = None  # (n, n) item-to-item weights
    shipped_index: ShippedIndex | None = None  # read instead of building one when it is the index asked for

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        feature_repo: Path,
        settings: CandidateSettings,
        read_features: ItemFeatureReader | None = None,
    ) -> BundleParts:
        """Loads the retrieval arrays, the optional towers, segments, shipped index and affinity weights, and
        the catalogue (genres for filters, years for fresh items, recent popularity for trending)."""
        arrays = bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT)
        item_ids = arrays["item_ids"].astype(str).tolist()
        features = (read_features or read_item_features)(feature_repo, item_ids)
        recent = features.get("recent_popularity")
        recent_pop = np.asarray([r or 0 for r in recent], dtype=np.float32) if recent is not None else None
        if "recent_popularity" in arrays:  # the bundle's own count, aligned with its items, wins
            recent_pop = np.asarray(arrays["recent_popularity"], dtype=np.float32)
        return cls(
            bundle.version,
            arrays,
            Catalogue.from_features(item_ids, dict(features)),
            contract=bundle.contract(RETRIEVAL_COMPONENT),
            query_tower=_query_tower(bundle, settings),
            item_tower=_item_tower(bundle, settings),
            segments=_segments(bundle),
            recent_popularity=recent_pop,
            shipped_index=_shipped_index(bundle),
            item_affinity=_item_affinity(bundle, item_ids),
        )


def _query_tower(bundle: Bundle, settings: CandidateSettings) -> QueryTower | None:
    if QUERY_TOWER_COMPONENT not in bundle.manifest.components:
        return None
    contract = bundle.contract(QUERY_TOWER_COMPONENT)
    return QueryTower(bundle.component(QUERY_TOWER_COMPONENT), contract, settings.query_threads)


def _item_tower(bundle: Bundle, settings: CandidateSettings) -> ItemTower | None:
    if ITEM_TOWER_COMPONENT not in bundle.manifest.components:
        return None
    contract = bundle.contract(ITEM_TOWER_COMPONENT)
    return ItemTower(bundle.component(ITEM_TOWER_COMPONENT), contract, settings.query_threads)


def _segments(bundle: Bundle) -> Segments | None:
    if SEGMENTS_COMPONENT not in bundle.manifest.components:
        return None
    return Segments.from_arrays(bundle.load_arrays(SEGMENTS_COMPONENT))


def _shipped_index(bundle: Bundle) -> ShippedIndex | None:
    if INDEX_COMPONENT not in bundle.manifest.components:
        return None
    return ShippedIndex(bundle.component(INDEX_COMPONENT), bundle.contract(INDEX_COMPONENT).get("index", {}))


def _item_affinity(bundle: Bundle, item_ids: list[str]) -> np.ndarray | None:
    if AFFINITY_COMPONENT not in bundle.manifest.components:
        return None
    weights = bundle.load_arrays(AFFINITY_COMPONENT, AFFINITY_CONTRACT)
    if weights["item_ids"].astype(str).tolist() != item_ids:
        raise ValueError(f"bundle {bundle.version}: item_affinity items differ from the retrieval items")
    return np.ascontiguousarray(weights["weights"], dtype=np.float32)
