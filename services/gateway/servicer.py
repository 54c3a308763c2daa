"""gRPC servicer of the public gateway."""

from __future__ import annotations

import asyncio
import logging

import grpc

from artifacts.bundle import load_current
from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.catalogue import Catalogue
from services.common.channels import open_channel
from services.common.errors import InvalidArgument, Unavailable
from services.common.retrieval_data import load_fallback_data
from services.common.security import BearerTokenInterceptor
from services.common.settings import CommonSettings
from services.gateway.eventlog import EventLog, open_event_log
from services.gateway.feedback import check_events
from services.gateway.fresh_features import ActivityPusher
from services.gateway.impressions import ImpressionLogger
from services.gateway.pipeline import RecommendPipeline
from services.gateway.settings import GatewaySettings
from services.gateway.similar import SimilarItems
from services.gateway.stage_clients import FeastFeatureStage, GrpcCandidateStage, GrpcRankingStage, GrpcRerankStage
from services.gateway.stages import Stages
from services.gateway.user_features import UserFeatureReader

log = logging.getLogger(__name__)

# How long start-up waits for the stage connections, at most (all at once). A local connection takes
# milliseconds; a stage that is down must not hold back SERVING, or a restarted gateway recovers later.
WARM_UP_CONNECT_S = 0.25


def _full_name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined]


class GatewayApp(gateway_pb2_grpc.GatewayServiceServicer):
    service_names = (_full_name(gateway_pb2, "GatewayService"),)

    def __init__(self, settings: GatewaySettings, common: CommonSettings, event_log: EventLog | None = None) -> None:
        self.settings = settings
        self.common = common
        self.pipeline: RecommendPipeline | None = None
        self.similar: SimilarItems | None = None
        self.features: FeastFeatureStage | None = None
        self.activity: ActivityPusher | None = None
        self.impressions: ImpressionLogger | None = None
        self._event_log = event_log  # injected (tests) or built from the settings in load()
        self.event_log: EventLog | None = None  # set once opened
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.interceptors = (BearerTokenInterceptor(settings.auth_token),) if settings.auth_token else ()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(self, server)

    async def load(self) -> None:
        s = self.settings
        creds = self.common.tls.channel_credentials()
        candidate = open_channel(s.candidate_address, [_full_name(candidate_pb2, "CandidateService")], creds)
        ranking = open_channel(s.ranking_address, [_full_name(ranking_pb2, "RankingService")], creds)
        rerank = open_channel(s.rerank_address, [_full_name(rerank_pb2, "RerankService")], creds)
        self.channels = {"candidate": candidate, "ranking": ranking, "rerank": rerank}
        self.pipeline = await asyncio.to_thread(self._load_pipeline)
        self.similar = SimilarItems(
            candidate_pb2_grpc.CandidateServiceStub(candidate),
            self.pipeline.answers,
            s.max_count,
            s.candidate_timeout_ms,
        )
        if s.push_features:
            source = s.activity_push_source
            try:
                self.activity = await asyncio.to_thread(ActivityPusher, self.common.feature_repo, source)
            except Exception as exc:  # e.g. a registry applied before the push source existed
                log.error("fresh features off: cannot push to %r (%s); run `feast apply`", source, exc)
        event_log = self._event_log or open_event_log(s)
        await event_log.open()
        self.event_log = event_log
        self.impressions = ImpressionLogger(
            event_log, s.impression_queue, s.impression_batch, backpressure_s=s.impression_backpressure_ms / 1000
        )
        self.impressions.start()
        log.info("gateway loaded bundle %s", self.pipeline.bundle_version)

    def _load_pipeline(self) -> RecommendPipeline:
        bundle = load_current(self.common.bundle_dir)
        fallback = load_fallback_data(bundle)
        catalogue = Catalogue.load(self.common.feature_repo, fallback.item_ids.tolist())
        self.features = FeastFeatureStage(
            UserFeatureReader(self.common.feature_repo, self.settings.user_feature_service)
        )
        stages = Stages(
            features=self.features,
            candidate=GrpcCandidateStage(candidate_pb2_grpc.CandidateServiceStub(self.channels["candidate"])),
            ranking=GrpcRankingStage(ranking_pb2_grpc.RankingServiceStub(self.channels["ranking"])),
            rerank=GrpcRerankStage(rerank_pb2_grpc.RerankServiceStub(self.channels["rerank"])),
        )
        return RecommendPipeline(self.settings, stages, fallback, catalogue, bundle.version)

    async def warm_up(self) -> None:
        """One Feast read (the SDK's first costs ~20 ms more than the next) and a connection to each stage that
        is already up. Neither holds back SERVING for long: the read has the requests' deadline, the connections
        WARM_UP_CONNECT_S. (A stage that was down is then in its reconnect backoff, about 1 s, as after any
        failed call.)"""
        if self.pipeline is not None:
            failed = await self.pipeline.warm_up()  # bounded as a request's read is
            if failed is not None:
                log.warning("feature store not reachable at start-up: %s", failed.why)
        ready = [asyncio.wait_for(channel.channel_ready(), WARM_UP_CONNECT_S) for channel in self.channels.values()]
        outcomes = await asyncio.gather(*ready, return_exceptions=True)
        missing = [name for name, outcome in zip(self.channels, outcomes, strict=True) if outcome is not None]
        if missing:
            log.info("not connected at start-up: %s; the first requests connect", ", ".join(missing))

    async def close(self) -> None:
        if self.features is not None:
            self.features.close()
        for channel in self.channels.values():
            await channel.close()
        if self.impressions is not None:
            await self.impressions.close()
        if self.event_log is not None:
            await self.event_log.close()

    def _ready(self) -> RecommendPipeline:
        if self.pipeline is None:
            raise Unavailable("the gateway is still loading")
        return self.pipeline

    async def Recommend(
        self, request: gateway_pb2.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RecommendResponse:
        reply = await self._ready().recommend(request, context.time_remaining())
        if self.impressions is not None:
            await self.impressions.submit(request.user_id, reply)
        return reply

    async def SimilarItems(
        self, request: gateway_pb2.SimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SimilarItemsResponse:
        if self.similar is None:
            raise Unavailable("the gateway is still loading")
        return await self.similar(request)

    async def RecordFeedback(
        self, request: gateway_pb2.RecordFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RecordFeedbackResponse:
        if self.event_log is None:
            raise Unavailable("the gateway is still loading")
        n = len(request.events)
        if n == 0:
            raise InvalidArgument("events is empty; send 1 or more events")
        checked = check_events(request, self.settings.max_future_skew_s, max_events=self.settings.max_feedback_batch)
        new = await self.event_log.append(checked.events)  # raises Unavailable unless durably stored
        if self.activity is not None:
            await self.activity.update(new)  # best effort: a failure is logged, the events stay stored
        return gateway_pb2.RecordFeedbackResponse(
            accepted=len(checked.events), duplicates=len(checked.events) - len(new), rejected=checked.rejected
        )
