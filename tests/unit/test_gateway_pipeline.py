"""The gateway's degradation matrix with fake stages behind the stage Protocols, in milliseconds: each of
features, candidate, ranking and rerank failing, hanging past its deadline or skipped for lack of budget, alone
and together, and what is served then (the real servers' version is tests/services/test_gateway.py).

The budget runs on a clock the test moves: a fake stage that "takes" 970 ms advances it and answers at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from recsys.ranking.v1 import ranking_pb2
from recsys.rerank.v1 import rerank_pb2
from services.common.catalogue import Catalogue
from services.common.errors import InvalidArgument
from services.common.reasons import source_reason
from services.common.retrieval_data import fallback_from_arrays
from services.gateway import budget as budget_module
from services.gateway.budget import STAGE_ORDER
from services.gateway.pipeline import RecommendPipeline
from services.gateway.settings import GatewaySettings
from services.gateway.stage_clients import checked_picks, checked_scores
from services.gateway.stages import Candidates, Degraded, Picks, Stages

EMBEDDING, BATCH, POPULAR = (common_pb2.CANDIDATE_SOURCE_EMBEDDING, common_pb2.CANDIDATE_SOURCE_BATCH,
                             common_pb2.CANDIDATE_SOURCE_POPULAR)  # fmt: skip
STAGE_VALUE = {stage: common_pb2.Stage.Value(f"STAGE_{stage.upper()}") for stage in STAGE_ORDER}

ITEMS = [f"i{n}" for n in range(12)]  # popularity grows with the number; even numbers are comedies
LIVE = ITEMS[:10]  # what the candidate stage retrieves, best first
USER = "u1"  # has seen i11; just watched i10; its precomputed list is i3, i5, i10
#: The candidate fallback: the batch list (less what the user just watched), then unseen popular items.
BATCH_THEN_POPULAR = ["i3", "i5", "i9", "i8", "i7", "i6", "i4", "i2", "i1", "i0"]
POPULAR_FOR_COLD = ["i10", "i9", "i8", "i7", "i6", "i5", "i4", "i3", "i2", "i1"]  # default features: no history
COUNT, RANKED = 4, 8


def _number(item_id: str) -> int:
    return int(item_id[1:])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeStage:
    """Any of the stage Protocols: answers `answer(request)`, or fails, or hangs (until the pipeline's deadline
    cancels it), after taking `takes_s` on the test's clock. Records each call and the deadline it was given."""

    name: str
    answer: Callable[[Any], Any]
    clock: Clock
    mode: str = "ok"  # ok | fails | hangs
    takes_s: float = 0.0
    calls: list[tuple[Any, float]] = field(default_factory=list)

    async def _call(self, request: Any, timeout_s: float) -> Any:
        self.calls.append((request, timeout_s))
        self.clock.now += self.takes_s
        if self.mode == "fails":
            return Degraded(self.name, "UNAVAILABLE the fake is down")
        if self.mode == "hangs":
            await asyncio.Event().wait()
        return self.answer(request)

    async def read(self, user_id: str, timeout_s: float) -> Any:
        return await self._call(user_id, timeout_s)

    async def retrieve(self, request: Any, timeout_s: float) -> Any:
        return await self._call(request, timeout_s)

    async def rank(self, request: Any, timeout_s: float) -> Any:
        return await self._call(request, timeout_s)

    async def rerank(self, request: Any, timeout_s: float) -> Any:
        return await self._call(request, timeout_s)


def _features(user_id: str) -> common_pb2.UserFeatures:
    return common_pb2.UserFeatures(user_id=user_id, recent_item_ids=["i10"], batch_item_ids=["i3", "i5", "i10"])


def _retrieve(request: Any) -> Candidates:
    return Candidates(list(LIVE), np.linspace(1.0, 0.1, len(LIVE), dtype=np.float32), [EMBEDDING] * len(LIVE), False)


def _rank(request: ranking_pb2.RankRequest) -> np.ndarray:
    return np.asarray([_number(i) / 100 for i in request.item_ids], dtype=np.float32)  # the higher number first


def _rerank(request: rerank_pb2.RerankRequest) -> Picks:
    """Swaps the first two of the shortlist."""
    positions = np.asarray([1, 0, *range(2, request.count)], dtype=np.int64)
    return Picks(positions, np.linspace(0.9, 0.5, request.count, dtype=np.float32), [f"why {k}" for k in positions])


ANSWERS = {"features": _features, "candidate": _retrieve, "ranking": _rank, "rerank": _rerank}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(monotonic=clock))
    return clock


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    genres = [["Comedy"] if _number(i) % 2 == 0 else ["Drama"] for i in ITEMS]
    return Catalogue.from_features(
        ITEMS, {"title": [f"Title {i}" for i in ITEMS], "year": [2000] * len(ITEMS), "genres": genres}
    )


def _pipeline(catalogue: Catalogue, fakes: dict[str, FakeStage], **settings: Any) -> RecommendPipeline:
    fields: dict[str, Any] = {
        "features_timeout_ms": 5, "candidate_timeout_ms": 5, "ranking_timeout_ms": 5, "rerank_timeout_ms": 5,
        "request_budget_ms": 1000, "stage_reserve_ms": 20, "candidate_count": 10, "ranked_count": RANKED,
        "max_count": 5,
    }  # fmt: skip
    fallback = fallback_from_arrays(
        {
            "item_ids": np.asarray(ITEMS),
            "user_ids": np.asarray([USER]),
            "popular_items": np.arange(len(ITEMS))[::-1],
            "popularity": np.arange(len(ITEMS), dtype=np.float32),
            "seen_indptr": np.asarray([0, 1]),
            "seen_indices": np.asarray([11]),
        }
    )
    stages = Stages(fakes["features"], fakes["candidate"], fakes["ranking"], fakes["rerank"])
    return RecommendPipeline(GatewaySettings(**{**fields, **settings}), stages, fallback, catalogue, "v-test")


def _fakes(clock: Clock, **modes: str) -> dict[str, FakeStage]:
    return {stage: FakeStage(stage, ANSWERS[stage], clock, modes.get(stage, "ok")) for stage in STAGE_ORDER}


async def _recommend(pipeline: RecommendPipeline, caller_timeout_s: float | None = None) -> Any:
    request = gateway_pb2.RecommendRequest(user_id=USER, count=COUNT, explain=True)
    return await pipeline.recommend(request, caller_timeout_s)


def _served(degraded: set[str]) -> tuple[list[str], str]:
    """What the pipeline serves when `degraded` stages are down: (item ids, the source of the candidates)."""
    if "candidate" not in degraded:
        candidates, source = LIVE, "live"
    else:
        candidates, source = (POPULAR_FOR_COLD if "features" in degraded else BATCH_THEN_POPULAR), "fallback"
    ranked = candidates[:RANKED] if "ranking" in degraded else sorted(candidates, key=_number, reverse=True)[:RANKED]
    return (ranked[:COUNT] if "rerank" in degraded else [ranked[1], ranked[0], *ranked[2:COUNT]]), source


def _degraded(reply: Any) -> list[str]:
    return [common_pb2.Stage.Name(s).removeprefix("STAGE_").lower() for s in reply.degraded_stages]


# -- the matrix --------------------------------------------------------------------------------------------


MODES = list(itertools.product(("ok", "fails", "hangs"), repeat=len(STAGE_ORDER)))


@pytest.mark.parametrize("modes", MODES, ids=["-".join(m) for m in MODES])
async def test_every_combination_of_failing_and_hanging_stages(
    clock: Clock, catalogue: Catalogue, modes: tuple[str, ...]
) -> None:
    fakes = _fakes(clock, **dict(zip(STAGE_ORDER, modes, strict=True)))
    reply = await _recommend(_pipeline(catalogue, fakes))
    down = {stage for stage, mode in zip(STAGE_ORDER, modes, strict=True) if mode != "ok"}
    expected, source = _served(down)
    assert [i.item_id for i in reply.items] == expected
    assert _degraded(reply) == [s for s in STAGE_ORDER if s in down], "in request order"
    assert all(len(f.calls) == 1 for f in fakes.values()), "a failed stage does not stop the later ones"
    sources = {i.source for i in reply.items}
    assert sources == ({EMBEDDING} if source == "live" else sources & {BATCH, POPULAR}) and sources
    assert not reply.cold_start and reply.bundle_version == "v-test" and reply.request_id
    scores = [i.score for i in reply.items]
    assert scores == sorted(scores, reverse=True) and all(i.reason for i in reply.items)


def test_the_matrix_expectations_are_the_literal_lists() -> None:
    """The expectations of `_served`, spelled out for each stage down alone."""
    assert _served(set()) == (["i8", "i9", "i7", "i6"], "live")
    assert _served({"features"}) == (["i8", "i9", "i7", "i6"], "live")
    assert _served({"candidate"}) == (["i8", "i9", "i7", "i6"], "fallback")
    assert _served({"ranking"}) == (["i1", "i0", "i2", "i3"], "live")
    assert _served({"rerank"}) == (["i9", "i8", "i7", "i6"], "live")
    assert _served({"features", "candidate"}) == (["i9", "i10", "i8", "i7"], "fallback")
    assert _served({"candidate", "ranking", "rerank"}) == (["i3", "i5", "i9", "i8"], "fallback")


@pytest.mark.parametrize(
    ("slow", "takes_s", "skipped"),
    [
        (None, 0.0, {"features"}),  # a 70 ms budget: less than the reserves of the three stages after features
        ("features", 0.95, {"candidate"}),  # ranking still has 10 ms after its reserve, rerank 30 ms
        ("candidate", 0.97, {"ranking"}),
        ("ranking", 0.985, {"rerank"}),
        ("features", 0.99, {"candidate", "ranking", "rerank"}),  # one slow stage spent what the others had
    ],
)
async def test_a_stage_without_budget_left_is_skipped_and_degraded(
    clock: Clock, catalogue: Catalogue, slow: str | None, takes_s: float, skipped: set[str]
) -> None:
    fakes = _fakes(clock)
    if slow is not None:
        fakes[slow].takes_s = takes_s
    pipeline = _pipeline(catalogue, fakes, **{f"{s}_timeout_ms": 300 for s in STAGE_ORDER})
    reply = await _recommend(pipeline, 0.07 if slow is None else None)
    assert _degraded(reply) == [s for s in STAGE_ORDER if s in skipped]
    assert [stage for stage, fake in fakes.items() if not fake.calls] == [s for s in STAGE_ORDER if s in skipped]
    assert [i.item_id for i in reply.items] == _served(skipped)[0]


async def test_each_stage_gets_its_own_deadline_cut_to_what_is_left(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock)
    fakes["features"].takes_s = 0.3
    fakes["candidate"].takes_s = 0.1
    pipeline = _pipeline(catalogue, fakes, **{f"{s}_timeout_ms": 300 for s in STAGE_ORDER}, request_budget_ms=500)
    await _recommend(pipeline)
    deadlines = {stage: fake.calls[0][1] for stage, fake in fakes.items()}
    # features: its own 300 ms; candidate: 200 ms left less 3 reserves; ranking: 100 less 2; rerank: 100 less 1.
    assert deadlines == pytest.approx({"features": 0.3, "candidate": 0.14, "ranking": 0.06, "rerank": 0.08})
    caller = _fakes(clock)
    await _recommend(_pipeline(catalogue, caller, **{f"{s}_timeout_ms": 300 for s in STAGE_ORDER}), 0.1)
    assert caller["features"].calls[0][1] == pytest.approx(0.02), "the caller's 100 ms deadline less 4 reserves"


async def test_a_hanging_stage_is_cut_at_its_deadline(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock, features="hangs", candidate="hangs", ranking="hangs", rerank="hangs")
    started = asyncio.get_running_loop().time()
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert asyncio.get_running_loop().time() - started < 0.5, "four 5 ms deadlines"
    assert _degraded(reply) == list(STAGE_ORDER) and len(reply.items) == COUNT


# -- what each degradation serves -------------------------------------------------------------------------


async def test_healthy_stages_serve_the_rerank_order_with_every_stage_score(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock)
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert [i.item_id for i in reply.items] == ["i8", "i9", "i7", "i6"] and not reply.degraded_stages
    first = reply.items[0]
    assert first.stage_scores.retrieval == pytest.approx(0.2) and first.stage_scores.ranking == pytest.approx(0.08)
    assert first.score == first.stage_scores.rerank == pytest.approx(0.9) and first.reason == "why 1"
    assert (first.info.title, list(first.info.genres), first.info.year) == ("Title i8", ["Comedy"], 2000)
    (rank_request, _), (rerank_request, _) = fakes["ranking"].calls[0], fakes["rerank"].calls[0]
    assert list(rank_request.item_ids) == LIVE
    assert list(rerank_request.item_ids) == ["i9", "i8", "i7", "i6", "i5", "i4", "i3", "i2"], "the top 8 by ranking"
    assert rerank_request.count == COUNT and list(rerank_request.history_item_ids) == ["i10"]
    assert not rerank_request.HasField("graph_weight") and not rerank_request.HasField("affinity_weight")


async def test_features_down_serves_default_features(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock, features="fails")
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert _degraded(reply) == ["features"] and [i.item_id for i in reply.items] == ["i8", "i9", "i7", "i6"]
    retrieve = fakes["candidate"].calls[0][0]
    assert retrieve.user_id == USER and not retrieve.recent_item_ids and not retrieve.user_features.recent_item_ids


async def test_candidate_down_serves_the_batch_list_then_popular_items(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock, candidate="fails", ranking="fails", rerank="fails")
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert [(i.item_id, i.source) for i in reply.items] == [("i3", BATCH), ("i5", BATCH), ("i9", POPULAR),
                                                             ("i8", POPULAR)]  # fmt: skip
    assert [i.reason for i in reply.items] == [source_reason(BATCH)] * 2 + [source_reason(POPULAR)] * 2
    retrieve = fakes["candidate"].calls[0][0]
    assert list(fakes["ranking"].calls[0][0].item_ids) == BATCH_THEN_POPULAR
    assert retrieve.count == 10 and not retrieve.user_features.batch_item_ids, "the batch list stays in the gateway"


async def test_the_candidate_fallback_keeps_the_filters_and_exclusions(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock, candidate="fails")
    request = gateway_pb2.RecommendRequest(
        user_id=USER, count=COUNT, exclude_item_ids=["i8"], filter=common_pb2.ItemFilter(include_genres=["Comedy"])
    )
    reply = await _pipeline(catalogue, fakes).recommend(request)
    served = [i.item_id for i in reply.items]
    assert set(served) == {"i6", "i4", "i2", "i0"}, "comedies not seen, just watched (i10) or excluded (i8)"


async def test_ranking_down_serves_retrieval_order_to_rerank(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock, ranking="hangs", rerank="fails")
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert [i.item_id for i in reply.items] == ["i0", "i1", "i2", "i3"]
    assert all(i.stage_scores.ranking == 0 for i in reply.items)
    assert [i.score for i in reply.items] == pytest.approx([1.0, 0.9, 0.8, 0.7]), "the retrieval scores"
    rerank_request = fakes["rerank"].calls[0][0]
    assert list(rerank_request.item_ids) == LIVE[:RANKED] and rerank_request.scores[0] == pytest.approx(1.0)


async def test_rerank_down_serves_ranking_order_with_source_reasons(clock: Clock, catalogue: Catalogue) -> None:
    reply = await _recommend(_pipeline(catalogue, _fakes(clock, rerank="hangs")))
    assert [i.item_id for i in reply.items] == ["i9", "i8", "i7", "i6"] and _degraded(reply) == ["rerank"]
    assert [i.score for i in reply.items] == pytest.approx([0.09, 0.08, 0.07, 0.06]), "the ranking scores"
    assert {i.reason for i in reply.items} == {source_reason(EMBEDDING)}


async def test_no_candidates_is_an_empty_answer_without_ranking(clock: Clock, catalogue: Catalogue) -> None:
    fakes = _fakes(clock)
    fakes["candidate"].answer = lambda request: Candidates([], np.empty(0, dtype=np.float32), [], True)
    reply = await _recommend(_pipeline(catalogue, fakes))
    assert not reply.items and reply.cold_start and not reply.degraded_stages
    assert not fakes["ranking"].calls and not fakes["rerank"].calls


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": 0}, "count must be at least 1"),
        ({"count": 6}, "count must be at most 5"),
        ({"user_id": ""}, "user_id is required"),
        ({"graph_weight": 1.5}, "graph_weight must be between 0 and 1"),
        ({"diversity_method": 7}, "diversity_method 7 is not a known method"),
        ({"filter": common_pb2.ItemFilter(exclude_genres=["Anime"])}, "unknown genre(s) 'Anime'"),
    ],
)
async def test_a_bad_request_fails_before_any_stage_is_called(
    clock: Clock, catalogue: Catalogue, fields: dict[str, Any], message: str
) -> None:
    fakes = _fakes(clock)
    with pytest.raises(InvalidArgument) as info:
        await _pipeline(catalogue, fakes).recommend(
            gateway_pb2.RecommendRequest(**{"user_id": USER, "count": 3, **fields})
        )
    assert message in info.value.message
    assert not any(f.calls for f in fakes.values())


# -- answers that do not fit the request ------------------------------------------------------------------


def test_a_ranking_answer_of_the_wrong_length_is_a_degradation() -> None:
    assert checked_scores(ranking_pb2.RankResponse(scores=[0.5, 0.4]), 2).tolist() == pytest.approx([0.5, 0.4])
    wrong = checked_scores(ranking_pb2.RankResponse(scores=[0.5]), 2)
    assert wrong == Degraded("ranking", "ranking returned 1 scores for 2 items")


@pytest.mark.parametrize("indices", [[0], [0, 2], [0, -1], [0, 1, 2]])
def test_a_rerank_answer_with_positions_off_the_list_is_a_degradation(indices: list[int]) -> None:
    reply = rerank_pb2.RerankResponse(indices=indices, scores=[0.5] * len(indices))
    assert isinstance(checked_picks(reply, 2, 2), Degraded)


def test_a_rerank_answer_without_reasons_gets_empty_ones() -> None:
    picks = checked_picks(rerank_pb2.RerankResponse(indices=[1, 0], scores=[0.9, 0.8]), 2, 3)
    assert isinstance(picks, Picks) and picks.positions.tolist() == [1, 0] and picks.reasons == ["", ""]
