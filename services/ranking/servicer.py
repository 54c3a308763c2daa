"""gRPC servicer of the ranking stage."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import grpc

from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from services.common.bundle import load_current
from services.common.errors import Unavailable
from services.common.settings import CommonSettings
from services.common.validation import check_count, check_id
from services.ranking.backends import InProcessBackend, RankerBackend, TritonBackend
from services.ranking.scorer import Encoder, RankerArtifacts, UserRow
from services.ranking.serving import MODEL_NAME
from services.ranking.settings import RankingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: str
    encoder: Encoder
    backend: RankerBackend


class RankingApp(ranking_pb2_grpc.RankingServiceServicer):
    service_names = (ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,)

    def __init__(self, settings: RankingSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.loaded: Loaded | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(self, server)

    async def load(self) -> None:
        artifacts = await asyncio.to_thread(lambda: RankerArtifacts.from_bundle(load_current(self.common.bundle_dir)))
        encoder = await asyncio.to_thread(Encoder.load, artifacts.contract, self.common.feature_repo)
        backend: RankerBackend
        if self.settings.backend == "triton":
            triton = TritonBackend(
                self.settings.triton_url, artifacts.triton_model, artifacts.triton_version, artifacts.contract
            )
            try:
                await triton.check_ready()
            except Unavailable as exc:  # serve anyway: Rank answers UNAVAILABLE until Triton is up
                log.warning("%s", exc.message)
            backend = triton
        else:
            backend = await asyncio.to_thread(
                InProcessBackend, artifacts.onnx_path, artifacts.contract, self.settings.score_threads
            )
        self.loaded = Loaded(artifacts.bundle_version, encoder, backend)
        log.info("ranking stage loaded bundle %s on the %s backend", artifacts.bundle_version, backend.name)

    async def close(self) -> None:
        if self.loaded is not None:
            await self.loaded.backend.close()

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RankResponse:
        loaded = self.loaded
        if loaded is None:
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
        make_batch = partial(loaded.encoder.encode, user, when, list(request.item_ids))
        scores = await loaded.backend.scores(make_batch, self.settings.backend_timeout_ms / 1000)
        return ranking_pb2.RankResponse(scores=scores.tolist(), model_name=MODEL_NAME, bundle_version=loaded.version)
