"""The item catalogue and item features, read once at start-up from the Feast online store.

Services hold these as column arrays aligned with the bundle's item order, so per-request work is array
indexing, never a feature-store call per candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import Unavailable

ITEM_PROFILE_SERVICE = "ranking_items_v1"
#: (feature repo, item ids) -> feature lists aligned with the ids; `read_item_features` reads Feast online, the
#: offline evaluation passes the train part's rows instead.
ItemFeatureReader = Callable[[Path, Sequence[str]], Mapping[str, list[Any]]]


def read_item_features(
    feature_repo: Path, item_ids: Sequence[str], service: str = ITEM_PROFILE_SERVICE
) -> dict[str, list[Any]]:
    """All features of a FeatureService for `item_ids`, as lists aligned with them (None where missing)."""
    try:
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(feature_repo))
        return store.get_online_features(
            features=store.get_feature_service(service),
            entity_rows=[{"item_id": item_id} for item_id in item_ids],
        ).to_dict()
    except Exception as exc:  # the Feast SDK raises many types; all mean "features unavailable"
        raise Unavailable(f"cannot read item features from the Feast repo at {feature_repo}: {exc}") from exc


def materialization_marks(feature_repo: Path, service: str = ITEM_PROFILE_SERVICE) -> tuple[str, ...]:
    """When each feature view of a FeatureService was last materialised, from a fresh read of the registry.

    Cheap next to re-reading every item's features: a change of these marks is what tells a service that its
    in-memory copy is stale.
    """
    try:
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(feature_repo))
        views = [p.name for p in store.get_feature_service(service).feature_view_projections]
        return tuple(f"{v}={store.get_feature_view(v).most_recent_end_time}" for v in sorted(views))
    except Exception as exc:  # the Feast SDK raises many types; all mean "registry unavailable"
        raise Unavailable(f"cannot read the feature registry at {feature_repo}: {exc}") from exc


@dataclass(frozen=True)
class Catalogue:
    """Descriptive item data aligned with the bundle's item order (index i is item_ids[i])."""

    item_ids: np.ndarray  # str
    titles: list[str]
    years: np.ndarray  # int32, 0 = unknown
    genres: list[list[str]]
    genre_vocab: tuple[str, ...]
    #: bit g set when the item has genre_vocab[g]
    genre_mask: np.ndarray  # uint64

    @classmethod
    def from_features(cls, item_ids: Sequence[str], features: dict[str, list[Any]]) -> Catalogue:
        genres = [list(g or []) for g in features["genres"]]
        vocab = tuple(sorted({g for gs in genres for g in gs}))
        if len(vocab) > 64:
            raise ValueError(f"{len(vocab)} genres; the genre bitmask holds at most 64")
        bit = {g: np.uint64(1) << np.uint64(i) for i, g in enumerate(vocab)}
        mask = np.array([sum((bit[g] for g in gs), np.uint64(0)) for gs in genres], dtype=np.uint64)
        return cls(
            item_ids=np.asarray(item_ids, dtype=str),
            titles=[t or "" for t in features["title"]],
            years=np.asarray([y or 0 for y in features["year"]], dtype=np.int32),
            genres=genres,
            genre_vocab=vocab,
            genre_mask=mask,
        )

    @classmethod
    def load(
        cls, feature_repo: Path, item_ids: Sequence[str], read_features: ItemFeatureReader | None = None
    ) -> Catalogue:
        return cls.from_features(item_ids, dict((read_features or read_item_features)(feature_repo, item_ids)))

    def genre_bits(self, names: Sequence[str]) -> np.uint64:
        """The mask of the named genres; unknown names are an error the caller reports."""
        out = np.uint64(0)
        for name in names:
            out |= np.uint64(1) << np.uint64(self.genre_vocab.index(name))
        return out

    def unknown_genres(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n not in self.genre_vocab]
