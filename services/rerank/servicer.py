"""gRPC servicer of the rerank stage."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import grpc
import numpy as np

from artifacts.bundle import load_current
from recsys.common.v1 import common_pb2
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.compute import ComputeRunner
from services.common.errors import InvalidArgument, Unavailable
from services.common.settings import CommonSettings
from services.common.validation import check_count, check_fraction, check_id
from services.rerank.reranker import DiversityMethod, Reranker
from services.rerank.rules import BusinessRules
from services.rerank.settings import RerankSettings

log = logging.getLogger(__name__)

MAX_HISTORY = 1000
#: Request enum -> method; None (unspecified) means the configured default.
METHODS: dict[int, DiversityMethod | None] = {
    common_pb2.DIVERSITY_METHOD_UNSPECIFIED: None,
    **{method.proto: method for method in DiversityMethod},
}


class RerankApp(rerank_pb2_grpc.RerankServiceServicer):
    service_names = (rerank_pb2.DESCRIPTOR.services_by_name["RerankService"].full_name,)
    interceptors = ()

    def __init__(self, settings: RerankSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.reranker: Reranker | None = None
        self.compute = ComputeRunner(settings.compute, settings.compute_threads, "rerank")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        rerank_pb2_grpc.add_RerankServiceServicer_to_server(self, server)

    async def load(self) -> None:
        rules = BusinessRules.load(self.settings.rules_file)  # a bad file fails the start, with its reasons
        self.reranker = await asyncio.to_thread(
            lambda: Reranker.from_bundle(load_current(self.common.bundle_dir), self.common.feature_repo, rules)
        )
        log.info("rerank stage loaded bundle %s", self.reranker.version)

    async def warm_up(self) -> None:
        if self.reranker is not None:
            s = self.settings
            await asyncio.to_thread(self.reranker.warm_up, s.graph_weight, s.affinity_weight)

    async def close(self) -> None:
        self.compute.shutdown()

    async def Rerank(
        self, request: rerank_pb2.RerankRequest, context: grpc.aio.ServicerContext
    ) -> rerank_pb2.RerankResponse:
        reranker = self.reranker
        if reranker is None:
            raise Unavailable("the rerank stage is still loading")
        check_id("user_id", request.user_id)
        n = len(request.item_ids)
        check_count("number of item_ids", n, self.settings.max_candidates)
        if len(request.scores) != n:
            raise InvalidArgument(f"scores has {len(request.scores)} entries; item_ids has {n}")
        if request.sources and len(request.sources) != n:
            raise InvalidArgument(f"sources has {len(request.sources)} entries; item_ids has {n}")
        if len(set(request.item_ids)) != n:
            raise InvalidArgument("item_ids contains duplicates")
        count = check_count("count", request.count, n)
        diversity = check_fraction("diversity", request.diversity)
        if request.diversity_method not in METHODS:
            raise InvalidArgument(f"diversity_method {request.diversity_method} is not a known method")
        method = METHODS[request.diversity_method]
        graph_weight = (
            check_fraction("graph_weight", request.graph_weight)
            if request.HasField("graph_weight")
            else self.settings.graph_weight
        )
        if request.affinity and len(request.affinity) != n:
            raise InvalidArgument(f"affinity has {len(request.affinity)} entries; item_ids has {n}")
        affinity = np.asarray(request.affinity, dtype=np.float32) if request.affinity else None
        if affinity is not None and not np.isfinite(affinity).all():
            raise InvalidArgument("affinity must be finite numbers")
        affinity_weight = (
            check_fraction("affinity_weight", request.affinity_weight)
            if request.HasField("affinity_weight")
            else self.settings.affinity_weight
        )
        if len(request.history_item_ids) > MAX_HISTORY:
            raise InvalidArgument(f"history_item_ids has more than {MAX_HISTORY} entries")
        result = await self.compute.run(
            partial(
                reranker.rerank,
                list(request.item_ids),
                np.asarray(request.scores, dtype=np.float32),
                list(request.sources),
                count,
                diversity,
                request.explain,
                list(request.history_item_ids),
                request.user_id,
                method or DiversityMethod(self.settings.diversity_method),
                graph_weight,
                affinity,
                affinity_weight,
            )
        )
        return rerank_pb2.RerankResponse(
            indices=result.positions.tolist(),
            scores=result.scores.tolist(),
            reasons=result.reasons,
            bundle_version=reranker.version,
        )
