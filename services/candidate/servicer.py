"""gRPC servicer of the candidate stage: protobuf <-> RetrievalQuery/Candidates, nothing else."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import faiss
import grpc

from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from services.candidate.retrieval import RetrievalQuery, Retriever
from services.candidate.settings import CandidateSettings
from services.common.bundle import load_current
from services.common.errors import Unavailable
from services.common.settings import CommonSettings
from services.common.validation import check_count, check_id, check_ids

log = logging.getLogger(__name__)

MAX_HISTORY = 1000
MAX_SIMILAR = 500


class CandidateApp(candidate_pb2_grpc.CandidateServiceServicer):
    service_names = (candidate_pb2.DESCRIPTOR.services_by_name["CandidateService"].full_name,)

    def __init__(self, settings: CandidateSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.retriever: Retriever | None = None
        # Faiss searches run here, off the event loop; one thread each keeps tail latency steady.
        self.executor = ThreadPoolExecutor(max_workers=settings.search_threads, thread_name_prefix="faiss")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        candidate_pb2_grpc.add_CandidateServiceServicer_to_server(self, server)

    async def load(self) -> None:
        self.retriever = await asyncio.to_thread(self._load)
        log.info(
            "candidate stage loaded bundle %s (%d items)",
            self.retriever.version,
            len(self.retriever.item_pos),
        )

    def _load(self) -> Retriever:
        faiss.omp_set_num_threads(1)
        return Retriever.from_bundle(load_current(self.common.bundle_dir), self.common.feature_repo)

    async def close(self) -> None:
        self.executor.shutdown(wait=False)

    def _ready(self) -> Retriever:
        if self.retriever is None:
            raise Unavailable("the candidate stage is still loading its index")
        return self.retriever

    async def Retrieve(
        self, request: candidate_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.RetrieveResponse:
        retriever = self._ready()
        query = RetrievalQuery(
            user_id=check_id("user_id", request.user_id),
            recent_item_ids=check_ids("recent_item_ids", request.recent_item_ids, MAX_HISTORY),
            count=check_count("count", request.count, self.settings.max_candidates),
            include_genres=list(request.filter.include_genres),
            exclude_genres=list(request.filter.exclude_genres),
            exclude_item_ids=check_ids("exclude_item_ids", request.exclude_item_ids, self.settings.max_candidates),
        )
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, partial(retriever.retrieve, query))
        return candidate_pb2.RetrieveResponse(
            item_ids=result.item_ids,
            scores=result.scores.tolist(),
            sources=result.sources,
            bundle_version=retriever.version,
            cold_start=result.cold_start,
        )

    async def SimilarItems(
        self, request: candidate_pb2.SimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.SimilarItemsResponse:
        retriever = self._ready()
        item_id = check_id("item_id", request.item_id)
        count = check_count("count", request.count, MAX_SIMILAR)
        loop = asyncio.get_running_loop()
        item_ids, scores = await loop.run_in_executor(self.executor, partial(retriever.similar_items, item_id, count))
        return candidate_pb2.SimilarItemsResponse(
            item_ids=item_ids, scores=scores.tolist(), bundle_version=retriever.version
        )
