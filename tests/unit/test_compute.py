"""Where a request's CPU work runs: inline on the event loop thread, or on a pool thread that sees the caller's
context (so spans and log trace ids carry over)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from pydantic import ValidationError

from services.candidate.settings import CandidateSettings
from services.common.compute import ComputeRunner
from services.ranking.settings import RankingSettings
from services.rerank.settings import RerankSettings

REQUEST = contextvars.ContextVar("request", default="none")


def where() -> tuple[str, str]:
    return threading.current_thread().name, REQUEST.get()


async def test_inline_runs_on_the_event_loop_thread_and_creates_no_pool() -> None:
    runner = ComputeRunner("inline", 2, "work")
    REQUEST.set("r1")
    assert runner.executor is None
    assert await runner.run(where) == (threading.current_thread().name, "r1")
    runner.shutdown()


async def test_pool_runs_on_its_threads_with_the_callers_context() -> None:
    runner = ComputeRunner("pool", 2, "work")
    try:

        async def call(request: str) -> tuple[str, str]:
            REQUEST.set(request)
            return await runner.run(where)

        results = await asyncio.gather(*(call(f"r{i}") for i in range(8)))
        assert [r[1] for r in results] == [f"r{i}" for i in range(8)]
        assert all(name.startswith("work") for name, _ in results)
        assert len({name for name, _ in results}) <= 2
    finally:
        runner.shutdown()


async def test_an_exception_in_the_work_reaches_the_caller_in_both_modes() -> None:
    def fail() -> None:
        raise ValueError("bad input")

    for mode in ("inline", "pool"):
        runner = ComputeRunner(mode, 1, "work")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="bad input"):
            await runner.run(fail)
        runner.shutdown()


def test_the_compute_settings_are_read_from_the_environment_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (CandidateSettings().compute, RankingSettings().compute, RerankSettings().compute) == (
        "auto",
        "inline",
        "inline",
    )
    monkeypatch.setenv("RECSYS_RANKING_COMPUTE", "pool")
    assert RankingSettings().compute == "pool"
    monkeypatch.setenv("RECSYS_RERANK_COMPUTE", "threads")
    with pytest.raises(ValidationError, match="compute"):
        RerankSettings()
