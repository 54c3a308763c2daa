"""gRPC servicers of the candidate stage: protobuf <-> the Retriever, bundle refresh and live catalogue changes."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import faiss
import grpc

from artifacts.bundle import Bundle, load_current
from recsys.candidate.v1 import candidate_pb2, candidate_pb2_grpc
from services.candidate.live import ItemContent
from services.candidate.monitor import RecallMonitor
from services.candidate.query import AnnProbe, RetrievalQuery
from services.candidate.retrieval import Retriever
from services.candidate.settings import CandidateSettings
from services.common.catalogue import ItemFeatureReader
from services.common.compute import ComputeRunner
from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.common.refresh import PeriodicRefresh
from services.common.settings import CommonSettings
from services.common.validation import MAX_ID_LENGTH, check_count, check_id, check_ids

log = logging.getLogger(__name__)

MAX_HISTORY = 1000
MAX_SIMILAR = 500
MAX_TITLE = 300
YEARS = (1800, 2200)


def _full_name(service: str) -> str:
    return str(candidate_pb2.DESCRIPTOR.services_by_name[service].full_name)


class CandidateApp(candidate_pb2_grpc.CandidateServiceServicer):
    service_names = (_full_name("CandidateService"), _full_name("CandidateAdminService"))
    interceptors = ()

    def __init__(
        self,
        settings: CandidateSettings,
        common: CommonSettings,
        read_features: ItemFeatureReader | None = None,
    ) -> None:
        self.settings = settings
        self.common = common
        self.read_features = read_features  # tests serve bundles whose items are not in the feature store
        self.retriever: Retriever | None = None
        # Where searches run (settings.compute): an exact search inline, an ANN search in the pool (auto).
        self.inline = ComputeRunner("inline", 1, "faiss")
        self.pool = ComputeRunner("pool", settings.search_threads, "faiss") if settings.compute != "inline" else None
        self.monitor = RecallMonitor(settings.recall_sample_rate, settings.recall_k)
        self.refresher = PeriodicRefresh("candidate", settings.refresh_seconds, self.refresh)
        # Runtime catalogue changes, last word per item (None = removed): replayed onto every new bundle.
        self.changes: dict[str, ItemContent | None] = {}
        self._admin = asyncio.Lock()
        self.admin = CandidateAdmin(self)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        candidate_pb2_grpc.add_CandidateServiceServicer_to_server(self, server)
        candidate_pb2_grpc.add_CandidateAdminServiceServicer_to_server(self.admin, server)

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def load(self) -> None:
        bundle = await asyncio.to_thread(load_current, self.common.bundle_dir)
        self.retriever = await asyncio.to_thread(self._build, bundle)
        log.info("candidate stage loaded %s", self.retriever.describe())
        self.refresher.start()

    def _build(self, bundle: Bundle) -> Retriever:
        faiss.omp_set_num_threads(1)
        retriever = Retriever.from_bundle(bundle, self.common.feature_repo, self.settings, self.read_features)
        retriever.warm_up()  # at start-up and before a bundle swap: no request meets a cold retriever
        return retriever

    async def refresh(self) -> None:
        """Builds a newly published bundle to the side, replays the runtime changes, then swaps it in; requests
        already running finish on the retriever they started with."""
        current = self.retriever
        if current is None:
            return
        bundle = await asyncio.to_thread(load_current, self.common.bundle_dir)
        if bundle.version == current.version:
            return
        fresh = await asyncio.to_thread(self._build, bundle)
        async with self._admin:  # no change can slip between the replay and the swap
            await asyncio.to_thread(self._replay, fresh, dict(self.changes))
            self.retriever = fresh
        log.info("candidate stage switched from bundle %s to %s", current.version, fresh.describe())

    @staticmethod
    def _replay(retriever: Retriever, changes: dict[str, ItemContent | None]) -> None:
        fits = [c for c in changes.values() if c is not None]
        upserts = [c for c in fits if not c.embedding or len(c.embedding) == retriever.dim]
        dropped = len(fits) - len(upserts)
        if dropped:
            log.warning("%d runtime items carry embeddings of another dimension than bundle %s: not replayed",
                        dropped, retriever.version)  # fmt: skip
        if upserts:
            retriever.upsert(upserts)
        removed = [i for i, c in changes.items() if c is None]
        if removed:
            retriever.remove(removed)

    async def warm_up(self) -> None:
        """Done as each bundle's retriever is built (`_build`)."""

    async def close(self) -> None:
        await self.refresher.stop()
        self.monitor.close()
        if self.pool is not None:
            self.pool.shutdown()

    def ready(self) -> Retriever:
        if self.retriever is None:
            raise Unavailable("the candidate stage is still loading its index")
        return self.retriever

    # --- CandidateService ---------------------------------------------------------------------------------

    async def Retrieve(
        self, request: candidate_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.RetrieveResponse:
        retriever = self.ready()
        recent = list(request.recent_item_ids)
        has_features = request.HasField("user_features")
        if not recent and has_features:
            recent = list(request.user_features.recent_item_ids)
        ctx = request.context
        query = RetrievalQuery(
            user_id=check_id("user_id", request.user_id),
            recent_item_ids=check_ids("recent_item_ids", recent, MAX_HISTORY),
            count=check_count("count", request.count, self.settings.max_candidates),
            include_genres=list(request.filter.include_genres),
            exclude_genres=list(request.filter.exclude_genres),
            exclude_item_ids=check_ids("exclude_item_ids", request.exclude_item_ids, self.settings.max_candidates),
            user_features=request.user_features if has_features else None,
            request_time=ctx.request_time.seconds if ctx.HasField("request_time") else None,
            device=int(ctx.device),
        )
        probe = partial(self._probe, retriever) if self.monitor.sampled() else None
        result = await self.runner_for(retriever).run(partial(retriever.retrieve, query, probe))
        return candidate_pb2.RetrieveResponse(
            item_ids=result.item_ids,
            scores=result.scores.tolist(),
            sources=result.sources,
            bundle_version=retriever.version,
            cold_start=result.cold_start,
            affinity=result.affinity.tolist() if result.affinity is not None else [],
        )

    def runner_for(self, retriever: Retriever) -> ComputeRunner:
        if self.pool is None or (self.settings.compute == "auto" and retriever.index.exact):
            return self.inline
        return self.pool

    def _probe(self, retriever: Retriever, probe: AnnProbe) -> None:
        self.monitor.offer(retriever.index, probe)

    async def SimilarItems(
        self, request: candidate_pb2.SimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.SimilarItemsResponse:
        retriever = self.ready()
        item_id = check_id("item_id", request.item_id)
        count = check_count("count", request.count, MAX_SIMILAR)
        item_ids, scores = await self.runner_for(retriever).run(partial(retriever.similar_items, item_id, count))
        return candidate_pb2.SimilarItemsResponse(
            item_ids=item_ids, scores=scores.tolist(), bundle_version=retriever.version
        )


def validate_upserts(
    items: Sequence[candidate_pb2.ItemUpsert], retriever: Retriever, max_items: int
) -> list[ItemContent]:
    """ItemContent for each entry, or InvalidArgument listing every problem (nothing is applied then)."""
    if not items:
        raise InvalidArgument("items is empty: give at least one item")
    if len(items) > max_items:
        raise InvalidArgument(f"items has {len(items)} entries; at most {max_items} are allowed per call")
    rules = _UpsertRules.of(retriever)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"items[{i}]"
        problems += _id_problems(where, item.item_id)
        if item.item_id in seen:
            problems.append(f"{where}.item_id {item.item_id!r} repeats items[{seen[item.item_id]}]")
        seen.setdefault(item.item_id, i)
        problems += rules.problems(where, item)
    if problems:
        shown = problems[:20]
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvalidArgument("invalid items: " + "; ".join(shown) + more)
    return [
        ItemContent(item.item_id, item.title.strip(), tuple(item.genres), int(item.year), tuple(item.embedding))
        for item in items
    ]


def _id_problems(where: str, item_id: str) -> list[str]:
    try:
        check_id(f"{where}.item_id", item_id)
    except InvalidArgument as exc:
        return [exc.message]
    return []


@dataclass(frozen=True)
class _UpsertRules:
    """What an upserted item must satisfy for the serving bundle."""

    genre_vocab: tuple[str, ...]
    tower_genres: frozenset[str] | None  # None: the bundle has no item tower
    dim: int
    version: str

    @classmethod
    def of(cls, retriever: Retriever) -> _UpsertRules:
        tower = retriever.item_tower
        return cls(
            genre_vocab=tuple(retriever.catalogue.genre_vocab),
            tower_genres=frozenset(tower.genres) if tower is not None else None,
            dim=retriever.dim,
            version=retriever.version,
        )

    def problems(self, where: str, item: candidate_pb2.ItemUpsert) -> list[str]:
        """Everything wrong with the item's content (its id is checked apart)."""
        out: list[str] = []
        title = item.title.strip()
        if not title:
            out.append(f"{where}.title is required")
        elif len(title) > MAX_TITLE:
            out.append(f"{where}.title is {len(title)} characters long; at most {MAX_TITLE} are allowed")
        out += self._genre_problems(where, item.genres)
        if item.year != 0 and not YEARS[0] <= item.year <= YEARS[1]:
            out.append(f"{where}.year {item.year} is outside {YEARS[0]}..{YEARS[1]} (0 = unknown)")
        out += self._embedding_problems(where, item.embedding)
        return out

    def _genre_problems(self, where: str, genres: Sequence[str]) -> list[str]:
        out = []
        unknown = [g for g in genres if g not in self.genre_vocab]
        if unknown:
            out.append(f"{where}.genres: unknown genre(s) {', '.join(map(repr, unknown))}; "
                       f"known genres: {', '.join(self.genre_vocab)}")  # fmt: skip
        elif self.tower_genres is not None and not set(genres) <= self.tower_genres:
            out.append(f"{where}.genres: {sorted(set(genres) - self.tower_genres)} unknown to the item tower")
        if len(set(genres)) != len(genres):
            out.append(f"{where}.genres repeats a genre")
        return out

    def _embedding_problems(self, where: str, embedding: Sequence[float]) -> list[str]:
        if not embedding:
            if self.tower_genres is None:
                return [f"{where}.embedding is required: bundle {self.version} has no item tower"]
            return []
        if len(embedding) != self.dim:
            return [f"{where}.embedding has {len(embedding)} values; the index has dimension {self.dim}"]
        if not all(math.isfinite(v) for v in embedding):
            return [f"{where}.embedding has a NaN or infinite value"]
        return []


class CandidateAdmin(candidate_pb2_grpc.CandidateAdminServiceServicer):
    """Live catalogue changes; each call is applied whole, to the serving retriever, and journalled."""

    def __init__(self, app: CandidateApp) -> None:
        self.app = app

    async def UpsertItems(
        self, request: candidate_pb2.UpsertItemsRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.UpsertItemsResponse:
        app = self.app
        async with app._admin:
            retriever = app.ready()
            items = validate_upserts(request.items, retriever, app.settings.max_admin_items)
            try:
                added, updated = await asyncio.to_thread(retriever.upsert, items)
            except ValueError as exc:
                raise FailedPrecondition(str(exc)) from exc
            for item in items:
                app.changes[item.item_id] = item
        log.info("upserted %d item(s) (%d new, %d updated) into bundle %s", len(items), added, updated,
                 retriever.version)  # fmt: skip
        return candidate_pb2.UpsertItemsResponse(
            added=added, updated=updated, bundle_version=retriever.version, catalogue_size=retriever.live.size
        )

    async def RemoveItems(
        self, request: candidate_pb2.RemoveItemsRequest, context: grpc.aio.ServicerContext
    ) -> candidate_pb2.RemoveItemsResponse:
        app = self.app
        ids = check_ids("item_ids", request.item_ids, app.settings.max_admin_items)
        if not ids:
            raise InvalidArgument("item_ids is empty: give at least one item id")
        if len(set(ids)) != len(ids):
            raise InvalidArgument("item_ids repeats an id")
        async with app._admin:
            retriever = app.ready()
            unknown = [i for i in ids if not retriever.knows(i) and i not in app.changes]
            if unknown:
                shown = ", ".join(repr(i[:MAX_ID_LENGTH]) for i in unknown[:10])
                raise InvalidArgument(f"item_ids not in the catalogue: {shown}" + (" …" if len(unknown) > 10 else ""))
            removed, already = await asyncio.to_thread(retriever.remove, ids)
            for item_id in ids:
                app.changes[item_id] = None
        log.info("removed %d item(s) from bundle %s (%d already removed)", removed, retriever.version, already)
        return candidate_pb2.RemoveItemsResponse(
            removed=removed, already_removed=already, bundle_version=retriever.version,
            catalogue_size=retriever.live.size,
        )  # fmt: skip
