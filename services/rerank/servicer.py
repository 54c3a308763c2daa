"""gRPC servicer of the rerank stage."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import grpc

from artifacts.bundle import load_current
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.compute import ComputeRunner
from services.common.errors import Unavailable
from services.common.settings import CommonSettings
from services.rerank.request import parse_rerank
from services.rerank.reranker import Reranker
from services.rerank.rules import BusinessRules
from services.rerank.settings import RerankSettings

log = logging.getLogger(__name__)


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
        query = parse_rerank(request, self.settings)
        result = await self.compute.run(partial(reranker.rerank, query))
        return rerank_pb2.RerankResponse(
            indices=result.positions.tolist(),
            scores=result.scores.tolist(),
            reasons=result.reasons,
            bundle_version=reranker.version,
        )
