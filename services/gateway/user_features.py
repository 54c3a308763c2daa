"""Reads a user's features from the Feast online store (one read per request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys.common.v1 import common_pb2
from services.common.errors import Unavailable


class UserFeatureReader:
    """Wraps the Feast SDK; `read` is blocking and is run off the event loop by the caller."""

    def __init__(self, feature_repo: Path, feature_service: str) -> None:
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(feature_repo))
        self.service = self.store.get_feature_service(feature_service)

    def read(self, user_id: str) -> common_pb2.UserFeatures:
        """The user's features; a user unknown to the store has only `user_id` set."""
        try:
            row = self.store.get_online_features(features=self.service, entity_rows=[{"user_id": user_id}]).to_dict()
        except Exception as exc:  # any SDK or store failure means "features unavailable"
            raise Unavailable(f"feature store read failed: {exc}") from exc
        return to_proto(user_id, {k: v[0] for k, v in row.items()})


def to_proto(user_id: str, values: dict[str, Any]) -> common_pb2.UserFeatures:
    last_active = values.get("last_active")
    raw_segment = values.get("segment")
    segment = int(raw_segment) if raw_segment is not None else -1  # -1: the batch job gave the user none
    segment_version = str(values.get("bundle_version") or "")
    has_segment = segment >= 0 and bool(segment_version)
    return common_pb2.UserFeatures(
        user_id=user_id,
        age_bucket=int(values.get("age_bucket") or 0),
        gender=values.get("gender") or "",
        occupation=values.get("occupation") or "",
        zip_prefix=values.get("zip_prefix") or "",
        interaction_count=int(values.get("interaction_count") or 0),
        mean_rating=float(values.get("mean_rating") or 0.0),
        recent_item_ids=list(values.get("recent_item_ids") or []),
        last_active_unix=int(last_active.timestamp()) if last_active is not None else 0,
        batch_item_ids=list(values.get("batch_item_ids") or []),
        segment=segment if has_segment else None,
        segment_bundle_version=segment_version if has_segment else "",
    )
