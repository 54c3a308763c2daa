"""A Recommend request, checked before any stage is called: a bad one fails fast with INVALID_ARGUMENT."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from services.common.catalogue import Catalogue
from services.common.errors import InvalidArgument
from services.common.retrieval_data import check_genres
from services.common.validation import check_count, check_fraction, check_id, check_ids

MAX_EXCLUDED = 1000


@dataclass(frozen=True)
class RecommendQuery:
    """What the stages are asked, from a checked request; optional weights stay None when the caller set none
    (the rerank stage then uses its own defaults)."""

    user_id: str
    count: int
    exclude_ids: list[str]
    filter: common_pb2.ItemFilter
    context: common_pb2.RequestContext  # with request_time set
    diversity: float
    diversity_method: common_pb2.DiversityMethod
    graph_weight: float | None
    affinity_weight: float | None
    explain: bool


def parse_recommend(
    request: gateway_pb2.RecommendRequest, max_count: int, default_diversity: float, catalogue: Catalogue
) -> RecommendQuery:
    """The checked request; raises InvalidArgument naming the first field that is wrong."""
    user_id = check_id("user_id", request.user_id)
    count = check_count("count", request.count, max_count)
    exclude_ids = check_ids("exclude_item_ids", request.exclude_item_ids, MAX_EXCLUDED)
    diversity = check_fraction("diversity", request.diversity) if request.HasField("diversity") else default_diversity
    graph_weight = check_fraction("graph_weight", request.graph_weight) if request.HasField("graph_weight") else None
    affinity_weight = (
        check_fraction("affinity_weight", request.affinity_weight) if request.HasField("affinity_weight") else None
    )
    if request.diversity_method not in common_pb2.DiversityMethod.values():
        raise InvalidArgument(f"diversity_method {request.diversity_method} is not a known method")
    check_genres(catalogue, [*request.filter.include_genres, *request.filter.exclude_genres])
    context = common_pb2.RequestContext()
    context.CopyFrom(request.context)
    if not context.HasField("request_time"):
        context.request_time.GetCurrentTime()
    return RecommendQuery(
        user_id=user_id,
        count=count,
        exclude_ids=exclude_ids,
        filter=request.filter,
        context=context,
        diversity=diversity,
        diversity_method=request.diversity_method,
        graph_weight=graph_weight,
        affinity_weight=affinity_weight,
        explain=request.explain,
    )
