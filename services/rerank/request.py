"""A Rerank request, checked: a bad one is INVALID_ARGUMENT naming the field, before any work is done."""

from __future__ import annotations

import numpy as np

from recsys.common.v1 import common_pb2
from recsys.rerank.v1 import rerank_pb2
from services.common.errors import InvalidArgument
from services.common.validation import check_count, check_fraction, check_id
from services.rerank.query import DiversityMethod, RerankQuery
from services.rerank.settings import RerankSettings

MAX_HISTORY = 1000
#: Request enum -> method; None (unspecified) means the configured default.
METHODS: dict[int, DiversityMethod | None] = {
    common_pb2.DIVERSITY_METHOD_UNSPECIFIED: None,
    **{method.proto: method for method in DiversityMethod},
}


def parse_rerank(request: rerank_pb2.RerankRequest, settings: RerankSettings) -> RerankQuery:
    """The checked query; unset weights and method are the service's defaults."""
    check_id("user_id", request.user_id)
    n = _check_candidates(request, settings.max_candidates)
    count = check_count("count", request.count, n)
    diversity = check_fraction("diversity", request.diversity)
    if request.diversity_method not in METHODS:
        raise InvalidArgument(f"diversity_method {request.diversity_method} is not a known method")
    method = METHODS[request.diversity_method]
    graph_weight = (
        check_fraction("graph_weight", request.graph_weight)
        if request.HasField("graph_weight")
        else settings.graph_weight
    )
    affinity = _check_affinity(request, n)
    affinity_weight = (
        check_fraction("affinity_weight", request.affinity_weight)
        if request.HasField("affinity_weight")
        else settings.affinity_weight
    )
    if len(request.history_item_ids) > MAX_HISTORY:
        raise InvalidArgument(f"history_item_ids has more than {MAX_HISTORY} entries")
    return RerankQuery(
        item_ids=list(request.item_ids),
        scores=np.asarray(request.scores, dtype=np.float32),
        count=count,
        sources=list(request.sources),
        affinity=affinity,
        diversity=diversity,
        method=method or DiversityMethod(settings.diversity_method),
        explain=request.explain,
        history_item_ids=list(request.history_item_ids),
        user_id=request.user_id,
        graph_weight=graph_weight,
        affinity_weight=affinity_weight,
    )


def _check_candidates(request: rerank_pb2.RerankRequest, max_candidates: int) -> int:
    """The number of candidates, when the arrays parallel to item_ids match it and the ids are distinct."""
    n = len(request.item_ids)
    check_count("number of item_ids", n, max_candidates)
    if len(request.scores) != n:
        raise InvalidArgument(f"scores has {len(request.scores)} entries; item_ids has {n}")
    if request.sources and len(request.sources) != n:
        raise InvalidArgument(f"sources has {len(request.sources)} entries; item_ids has {n}")
    if len(set(request.item_ids)) != n:
        raise InvalidArgument("item_ids contains duplicates")
    return n


def _check_affinity(request: rerank_pb2.RerankRequest, n: int) -> np.ndarray | None:
    if request.affinity and len(request.affinity) != n:
        raise InvalidArgument(f"affinity has {len(request.affinity)} entries; item_ids has {n}")
    affinity = np.asarray(request.affinity, dtype=np.float32) if request.affinity else None
    if affinity is not None and not np.isfinite(affinity).all():
        raise InvalidArgument("affinity must be finite numbers")
    return affinity
