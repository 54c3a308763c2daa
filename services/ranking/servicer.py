"""gRPC servicer of the ranking stage."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

import grpc

from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from services.common.bundle import load_current
from services.common.errors import Unavailable
from services.common.settings import CommonSettings
from services.common.validation import check_count, check_id
from services.ranking.model import MODEL_NAME
from services.ranking.scorer import Scorer, UserRow
from services.ranking.settings import RankingSettings

log = logging.getLogger(__name__)


class RankingApp(ranking_pb2_grpc.RankingServiceServicer):
    service_names = (ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,)

    def __init__(self, settings: RankingSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.scorer: Scorer | None = None
        self.executor = ThreadPoolExecutor(max_workers=settings.score_threads, thread_name_prefix="rank")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(self, server)

    async def load(self) -> None:
        self.scorer = await asyncio.to_thread(
            lambda: Scorer.from_bundle(load_current(self.common.bundle_dir), self.common.feature_repo)
        )
        log.info("ranking stage loaded bundle %s", self.scorer.version)

    async def close(self) -> None:
        self.executor.shutdown(wait=False)

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RankResponse:
        scorer = self.scorer
        if scorer is None:
            raise Unavailable("the ranking stage is still loading its model")
        u = request.user
        user = UserRow(
            user_id=check_id("user.user_id", u.user_id),
            age_bucket=u.age_bucket,
            gender=u.gender,
            occupation=u.occupation,
            interaction_count=max(u.interaction_count, 0),
            mean_rating=u.mean_rating,
        )
        check_count("number of item_ids", len(request.item_ids), self.settings.max_candidates)
        when = (
            request.context.request_time.ToDatetime(tzinfo=UTC)
            if request.context.HasField("request_time")
            else datetime.now(UTC)
        )
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(self.executor, partial(scorer.score, user, when, list(request.item_ids)))
        return ranking_pb2.RankResponse(scores=scores.tolist(), model_name=MODEL_NAME, bundle_version=scorer.version)
