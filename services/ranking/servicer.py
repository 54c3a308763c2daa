"""gRPC servicer of the ranking stage."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import grpc

from artifacts.bundle import Bundle, load_current
from artifacts.ranker_signature import MODEL_NAME
from recsys.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from services.common.catalogue import materialization_marks
from services.common.compute import ComputeRunner
from services.common.errors import Unavailable
from services.common.refresh import PeriodicRefresh, close_later
from services.common.settings import CommonSettings
from services.common.validation import check_count, check_id
from services.ranking.backends import InProcessBackend, RankerBackend, TritonBackend
from services.ranking.scorer import Encoder, RankerArtifacts, UserRow
from services.ranking.settings import RankingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: str
    encoder: Encoder
    backend: RankerBackend


class RankingApp(ranking_pb2_grpc.RankingServiceServicer):
    service_names = (ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,)
    interceptors = ()

    def __init__(self, settings: RankingSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.loaded: Loaded | None = None
        self.refresher = PeriodicRefresh("ranking", settings.refresh_seconds, self.refresh)
        self._feature_marks: tuple[str, ...] = ()
        self._retiring: set[asyncio.Task[None]] = set()
        self.compute = ComputeRunner(settings.compute, settings.score_threads, "score")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(self, server)

    async def load(self) -> None:
        bundle = await asyncio.to_thread(load_current, self.common.bundle_dir)
        self._feature_marks = await asyncio.to_thread(materialization_marks, self.common.feature_repo)
        self.loaded = await self._build(bundle, require_ready=False)
        log.info("ranking stage loaded bundle %s on the %s backend", bundle.version, self.loaded.backend.name)
        self.refresher.start()

    async def _build(self, bundle: Bundle, require_ready: bool) -> Loaded:
        artifacts = await asyncio.to_thread(RankerArtifacts.from_bundle, bundle)
        encoder = await asyncio.to_thread(Encoder.load, artifacts.contract, self.common.feature_repo)
        backend: RankerBackend
        if self.settings.backend == "triton":
            triton = TritonBackend(
                self.settings.triton_url,
                artifacts.triton_model,
                artifacts.triton_version,
                artifacts.contract,
                self.compute,
            )
            try:
                await triton.check_ready()
            except Unavailable as exc:
                if require_ready:  # a new bundle waits until Triton serves its version
                    await triton.close()
                    raise
                log.warning("%s", exc.message)  # at start-up serve anyway: Rank is UNAVAILABLE until Triton is up
            backend = triton
        else:
            backend = await asyncio.to_thread(InProcessBackend, artifacts.onnx_path, artifacts.contract, self.compute)
        loaded = Loaded(bundle.version, encoder, backend)
        await self._warm_up(loaded)  # at start-up and before a bundle swap: no request meets a cold model
        return loaded

    async def _warm_up(self, loaded: Loaded) -> None:
        """One batch of 500 items through the encoder and the backend: the first onnxruntime run (or Triton
        call) costs several milliseconds more than the next ones."""
        items = list(itertools.islice(loaded.encoder.item_pos, 500))
        batch = partial(loaded.encoder.encode, UserRow(user_id=""), datetime.now(UTC), items)
        try:
            await loaded.backend.scores(batch, self.settings.backend_timeout_ms / 1000)
        except Unavailable as exc:  # Triton not up yet: Rank is UNAVAILABLE until it is
            log.info("ranking warm-up skipped: %s", exc.message)

    async def refresh(self) -> None:
        """Swaps in a newly published bundle, or else re-reads the item features once they were re-materialised."""
        current = self.loaded
        if current is None:
            return
        bundle = await asyncio.to_thread(load_current, self.common.bundle_dir)
        if bundle.version != current.version:
            try:
                marks = await asyncio.to_thread(materialization_marks, self.common.feature_repo)
                self.loaded = await self._build(bundle, require_ready=True)
                self._feature_marks = marks
            except Unavailable as exc:
                log.warning("bundle %s not switched to yet: %s", bundle.version, exc.message)
                return
            self._retire(current.backend)
            log.info("ranking stage switched from bundle %s to %s", current.version, bundle.version)
            return
        marks = await asyncio.to_thread(materialization_marks, self.common.feature_repo)
        if marks != self._feature_marks:
            encoder = await asyncio.to_thread(Encoder.load, current.encoder.contract, self.common.feature_repo)
            self.loaded = Loaded(current.version, encoder, current.backend)
            self._feature_marks = marks
            log.info("ranking stage re-read the item features (materialised again)")

    def _retire(self, backend: RankerBackend) -> None:
        task = asyncio.create_task(close_later(backend.close, self.settings.grace_seconds))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def warm_up(self) -> None:
        """Done as each bundle's model is built (`_build`)."""

    async def close(self) -> None:
        await self.refresher.stop()
        if self.loaded is not None:
            await self.loaded.backend.close()
        self.compute.shutdown()

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
