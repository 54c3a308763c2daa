"""The ranking core: scores candidates of one user, with item features held in memory.

Item features are read from the Feast online store once at load and encoded into arrays aligned with the
bundle's items; a request encodes one user row and the request context, then gathers item rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from services.common.bundle import Bundle
from services.common.catalogue import read_item_features
from services.common.errors import InvalidArgument
from services.ranking import features as rf
from services.ranking.model import MODEL_NAME, MlpRanker

RANKER_COMPONENT = "ranker"


@dataclass(frozen=True)
class UserRow:
    user_id: str
    age_bucket: int = 0
    gender: str = ""
    occupation: str = ""
    interaction_count: int = 0
    mean_rating: float = 0.0


class Scorer:
    def __init__(self, version: str, contract: rf.RankerContract, model: MlpRanker, items: rf.EncodedItems) -> None:
        self.version = version
        self.contract = contract
        self.model = model
        self.items = items
        self.item_pos = {item_id: i for i, item_id in enumerate(contract.vocabularies["item_id"])}

    @classmethod
    def from_bundle(cls, bundle: Bundle, feature_repo: Path) -> Scorer:
        contract_json = bundle.contract(RANKER_COMPONENT)
        if contract_json.get("model") != MODEL_NAME:
            raise ValueError(f"bundle {bundle.version} ranker is {contract_json.get('model')!r}; expected {MODEL_NAME}")
        contract = rf.RankerContract.from_json(contract_json["features"])
        if contract.version != rf.CONTRACT_VERSION:
            raise ValueError(
                f"bundle {bundle.version} ranker features are {contract.version!r}; this service encodes "
                f"{rf.CONTRACT_VERSION!r}"
            )
        weights = bundle.load_arrays(RANKER_COMPONENT)
        model = MlpRanker(weights, n_sparse=len(rf.SPARSE_FEATURES))
        item_ids = contract.vocabularies["item_id"]
        feats = read_item_features(feature_repo, item_ids)

        def column(name: str) -> np.ndarray:
            return np.asarray([v if v is not None else 0 for v in feats[name]], dtype=np.float64)

        items = rf.encode_items(
            contract,
            item_ids,
            [list(g or []) for g in feats["genres"]],
            column("popularity"),
            column("mean_rating"),
            column("recent_popularity"),
            column("year"),
        )
        return cls(bundle.version, contract, model, items)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        rows = np.fromiter((self.item_pos.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        if (rows < 0).any():
            unknown = [item_ids[i] for i in np.flatnonzero(rows < 0)[:5]]
            raise InvalidArgument(f"item ids unknown to ranking bundle {self.version}: {', '.join(unknown)}")
        return rows

    def score(self, user: UserRow, when: datetime, item_ids: Sequence[str]) -> np.ndarray:
        rows = self.rows(item_ids)
        user_sparse, user_dense = rf.encode_user(
            self.contract,
            user.user_id,
            user.age_bucket,
            user.gender,
            user.occupation,
            user.interaction_count,
            user.mean_rating,
        )
        context = rf.encode_context(np.asarray([when.hour]), np.asarray([when.weekday()]))
        batch = rf.encode_batch(self.contract, user_sparse, user_dense, context, self.items, rows)
        return self.model.scores(batch)
