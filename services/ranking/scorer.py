"""The ranking core: encodes a user's candidates against the item features held in memory, then scores them
on the configured backend (in-process onnxruntime or Triton).

Item features are read from the Feast online store once at load and encoded into arrays aligned with the
bundle's items; a request encodes one user row and the request context, then gathers item rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from artifacts import ranker_features as rf
from artifacts.bundle import RANKER_COMPONENT, Bundle
from artifacts.ranker_signature import MODEL_NAME, OUTPUT, input_specs
from services.common.catalogue import ItemFeatureReader, read_item_features
from services.common.errors import FailedPrecondition
from services.common.retrieval_data import known_rows


@dataclass(frozen=True)
class UserRow:
    user_id: str
    age_bucket: int = 0
    gender: str = ""
    occupation: str = ""
    interaction_count: int = 0
    mean_rating: float = 0.0


@dataclass(frozen=True)
class RankerArtifacts:
    """What the bundle holds for ranking: the ONNX file, its feature contract and its Triton address."""

    bundle_version: str
    onnx_path: Path
    contract: rf.RankerContract
    triton_model: str
    triton_version: int

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> RankerArtifacts:
        c = bundle.contract(RANKER_COMPONENT)
        if c.get("model") != MODEL_NAME:
            raise FailedPrecondition(f"bundle {bundle.version} ranker is {c.get('model')!r}; expected {MODEL_NAME}")
        contract = rf.RankerContract.from_json(c["features"])
        if contract.version != rf.CONTRACT_VERSION:
            raise FailedPrecondition(
                f"bundle {bundle.version} ranker features are {contract.version!r}; this service encodes "
                f"{rf.CONTRACT_VERSION!r}"
            )
        expected = {"inputs": [s.name for s in input_specs(contract)], "output": OUTPUT}
        return cls(
            bundle_version=bundle.version,
            onnx_path=bundle.component(RANKER_COMPONENT, expected),
            contract=contract,
            triton_model=str(c["triton_model"]),
            triton_version=int(c["triton_version"]),
        )


class Encoder:
    """Turns (user, context, candidate ids) into the ranker's input tensors."""

    def __init__(self, contract: rf.RankerContract, items: rf.EncodedItems) -> None:
        self.contract = contract
        self.items = items
        self.item_pos = {item_id: i for i, item_id in enumerate(contract.vocabularies["item_id"])}

    @classmethod
    def load(
        cls, contract: rf.RankerContract, feature_repo: Path, read_features: ItemFeatureReader | None = None
    ) -> Encoder:
        item_ids = contract.vocabularies["item_id"]
        feats = (read_features or read_item_features)(feature_repo, item_ids)

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
        return cls(contract, items)

    def encode(self, user: UserRow, when: datetime, item_ids: Sequence[str]) -> rf.EncodedBatch:
        rows = known_rows(self.item_pos, item_ids, "item ids unknown to the ranking model")
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
        return rf.encode_batch(self.contract, user_sparse, user_dense, context, self.items, rows)
