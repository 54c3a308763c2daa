"""The candidates when the candidate stage is down: the user's precomputed list (training/batch_recommend.py,
read with the user's features), then the bundle's popular list, with the filters and exclusions a live answer
has."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.candidate.v1 import candidate_pb2
from recsys.common.v1 import common_pb2
from services.common.catalogue import Catalogue
from services.common.retrieval_data import FallbackData, resolve_rows
from services.gateway.stages import Candidates


def fallback_candidates(
    fb: FallbackData, catalogue: Catalogue, request: candidate_pb2.RetrieveRequest, batch_ids: Sequence[str]
) -> Candidates:
    """Up to `request.count` candidates for the Retrieve call that failed: the batch list first (best first),
    popular items after it."""
    allowed, _ = fb.candidate_mask(
        catalogue,
        request.user_id,
        request.recent_item_ids,
        request.exclude_item_ids,
        request.filter.include_genres,
        request.filter.exclude_genres,
    )
    batch = resolve_rows(fb.item_pos, batch_ids)  # ids gone from the catalogue drop out
    batch = batch[allowed[batch]][: request.count]
    allowed[batch] = False
    rows, scores = fb.popular.top(allowed, request.count - len(batch))
    batch_scores = np.linspace(1.0, 0.5, len(batch), dtype=np.float32)  # order only: best first
    return Candidates(
        [*fb.item_ids[batch].tolist(), *fb.item_ids[rows].tolist()],
        np.concatenate([batch_scores, np.asarray(scores, dtype=np.float32) * 0.5]),
        [common_pb2.CANDIDATE_SOURCE_BATCH] * len(batch) + [common_pb2.CANDIDATE_SOURCE_POPULAR] * len(rows),
        cold_start=False,
    )
