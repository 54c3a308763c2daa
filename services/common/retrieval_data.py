"""What the retrieval component of a bundle holds, and the filtering every candidate source applies.

The candidate service uses all of it; the gateway uses the popular list and the seen-item sets for its own
fallback when the candidate stage is down, so both exclude and filter the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifacts.bundle import RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT, Bundle
from services.common.catalogue import Catalogue
from services.common.errors import InvalidArgument


@dataclass(frozen=True)
class SeenItems:
    """Items each known user interacted with in the training data (CSR over user positions)."""

    user_pos: dict[str, int]
    indptr: np.ndarray
    indices: np.ndarray

    def rows(self, user_id: str) -> np.ndarray:
        pos = self.user_pos.get(user_id)
        if pos is None:
            return np.empty(0, dtype=np.int64)
        return self.indices[self.indptr[pos] : self.indptr[pos + 1]].astype(np.int64)


@dataclass(frozen=True)
class Exclusions:
    """The filters of one request, resolved against the catalogue."""

    include_genres: Sequence[str] = ()
    exclude_genres: Sequence[str] = ()
    excluded_rows: np.ndarray | None = None


def resolve_rows(item_pos: dict[str, int], item_ids: Sequence[str]) -> np.ndarray:
    """Catalogue rows of the ids that are known; unknown ids are simply not in the catalogue."""
    return np.fromiter((item_pos[i] for i in item_ids if i in item_pos), dtype=np.int64)


def known_rows(item_pos: dict[str, int], item_ids: Sequence[str], what: str) -> np.ndarray:
    """Rows of `item_ids`, which must all be known: InvalidArgument naming (up to five of) the unknown ones."""
    rows = np.fromiter((item_pos.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
    if (rows < 0).any():
        unknown = [item_ids[i] for i in np.flatnonzero(rows < 0)[:5]]
        raise InvalidArgument(f"{what}: {', '.join(unknown)}")
    return rows


def has_bias_column(contract: dict[str, Any]) -> bool:
    """Whether the retrieval vectors end with a bias column (BPR-MF bundles; two-tower ones do not)."""
    return bool(contract.get("bias_column", contract.get("model", "bpr_mf") != "two_tower"))


def normalised_item_factors(item_vectors: np.ndarray, bias_column: bool = True) -> np.ndarray:
    """The item factors (without the bias column, if any), L2-normalised: the space of "similar"."""
    factors = np.asarray(item_vectors[:, :-1] if bias_column else item_vectors, dtype=np.float32)
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return np.ascontiguousarray(factors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def check_genres(catalogue: Catalogue, names: Sequence[str]) -> None:
    """Raises InvalidArgument naming the unknown genres and listing the known ones."""
    unknown = catalogue.unknown_genres(names)
    if unknown:
        known = ", ".join(catalogue.genre_vocab)
        raise InvalidArgument(f"unknown genre(s) {', '.join(map(repr, unknown))}; known genres: {known}")


def allowed_mask(catalogue: Catalogue, exclusions: Exclusions) -> np.ndarray:
    """Boolean mask over catalogue rows of items that pass the filters (vectorised)."""
    check_genres(catalogue, [*exclusions.include_genres, *exclusions.exclude_genres])
    mask = np.ones(len(catalogue.item_ids), dtype=bool)
    if exclusions.include_genres:
        mask &= (catalogue.genre_mask & catalogue.genre_bits(exclusions.include_genres)) != 0
    if exclusions.exclude_genres:
        mask &= (catalogue.genre_mask & catalogue.genre_bits(exclusions.exclude_genres)) == 0
    if exclusions.excluded_rows is not None and len(exclusions.excluded_rows):
        mask[exclusions.excluded_rows] = False
    return mask


@dataclass(frozen=True)
class PopularItems:
    """Items in order of popularity: the cold-start and fallback source."""

    order: np.ndarray  # catalogue rows, most popular first
    popularity: np.ndarray  # interactions per catalogue row

    def top(self, allowed: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The `count` most popular allowed rows and a score in [0, 1] (popularity relative to the top)."""
        rows = self.order[allowed[self.order]][:count]
        top = max(int(self.popularity[self.order[0]]), 1) if len(self.order) else 1
        return rows, (self.popularity[rows] / top).astype(np.float32)


@dataclass(frozen=True)
class FallbackData:
    """The parts of the retrieval component a fallback needs."""

    item_ids: np.ndarray
    item_pos: dict[str, int]
    popular: PopularItems
    seen: SeenItems

    def candidate_mask(
        self,
        catalogue: Catalogue,
        user_id: str,
        recent_item_ids: Sequence[str],
        exclude_item_ids: Sequence[str],
        include_genres: Sequence[str] = (),
        exclude_genres: Sequence[str] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which catalogue rows may be recommended to the user (not seen, not just consumed, not excluded, and
        passing the genre filters), and the rows of the user's recent items."""
        recent_rows = resolve_rows(self.item_pos, recent_item_ids)
        excluded = np.concatenate([self.seen.rows(user_id), recent_rows, resolve_rows(self.item_pos, exclude_item_ids)])
        return allowed_mask(catalogue, Exclusions(include_genres, exclude_genres, excluded)), recent_rows


#: What a fallback reads of the retrieval component (not the embeddings).
FALLBACK_ARRAYS = ("item_ids", "user_ids", "popular_items", "popularity", "seen_indptr", "seen_indices")


def load_fallback_data(bundle: Bundle) -> FallbackData:
    return fallback_from_arrays(bundle.load_arrays(RETRIEVAL_COMPONENT, RETRIEVAL_CONTRACT, keys=FALLBACK_ARRAYS))


def fallback_from_arrays(arrays: dict[str, np.ndarray]) -> FallbackData:
    item_ids = arrays["item_ids"]
    user_ids = arrays["user_ids"]
    return FallbackData(
        item_ids=item_ids,
        item_pos={str(item_id): i for i, item_id in enumerate(item_ids.tolist())},
        popular=PopularItems(order=arrays["popular_items"].astype(np.int64), popularity=arrays["popularity"]),
        seen=SeenItems(
            user_pos={str(u): i for i, u in enumerate(user_ids.tolist())},
            indptr=arrays["seen_indptr"],
            indices=arrays["seen_indices"],
        ),
    )
