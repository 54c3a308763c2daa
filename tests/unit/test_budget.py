"""The request budget alone, on a clock the test moves: the caller's deadline against the configured budget,
the reserve kept per later stage, and exhaustion."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.common.errors import Unavailable
from services.gateway import budget as budget_module
from services.gateway.budget import STAGE_ORDER, Budget, NoBudgetLeft


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(monotonic=clock))
    return clock


@pytest.mark.parametrize(
    ("caller_timeout_s", "total_s"),
    [(None, 1.0), (0.25, 0.25), (5.0, 1.0), (1.0, 1.0), (0.0, 0.0)],
)
def test_the_caller_deadline_is_the_budget_when_it_is_sooner(
    clock: Clock, caller_timeout_s: float | None, total_s: float
) -> None:
    budget = Budget.for_request(1000, 20, caller_timeout_s)
    assert budget.total_s == total_s and budget.reserve_s == 0.02
    assert budget.ends_at == clock.now + total_s


def test_each_stage_keeps_a_reserve_for_every_stage_after_it_and_the_answer(clock: Clock) -> None:
    budget = Budget.for_request(1000, 20, None)
    # A stage's own deadline is longer than the budget: what is left, less one reserve per stage still to come.
    left = {stage: budget.stage_timeout_s(stage, 5000) for stage in STAGE_ORDER}
    assert left == pytest.approx({"features": 0.92, "candidate": 0.94, "ranking": 0.96, "rerank": 0.98})


def test_a_stage_gets_its_own_deadline_when_that_is_shorter(clock: Clock) -> None:
    budget = Budget.for_request(1000, 20, None)
    assert budget.stage_timeout_s("candidate", 300) == pytest.approx(0.3)
    clock.now += 0.7  # 300 ms left, less 3 reserves: 240 ms
    assert budget.stage_timeout_s("candidate", 300) == pytest.approx(0.24)
    assert budget.stage_timeout_s("rerank", 300) == pytest.approx(0.28)


def test_time_spent_comes_off_every_later_stage(clock: Clock) -> None:
    budget = Budget.for_request(200, 10, None)
    clock.now += 0.15
    assert budget.stage_timeout_s("ranking", 300) == pytest.approx(0.03)
    assert budget.stage_timeout_s("rerank", 300) == pytest.approx(0.04)


def test_a_stage_with_too_little_time_left_raises_no_budget_left(clock: Clock) -> None:
    budget = Budget.for_request(1000, 20, None)
    clock.now += 0.96 - Budget.MIN_STAGE_S  # ranking: exactly the least a call needs
    assert budget.stage_timeout_s("ranking", 300) == pytest.approx(Budget.MIN_STAGE_S)
    clock.now += 0.001  # below it: ranking is skipped, rerank (one reserve fewer) still gets a deadline
    with pytest.raises(NoBudgetLeft, match=r"no time left in the request's 1000 ms budget") as info:
        budget.stage_timeout_s("ranking", 300)
    assert isinstance(info.value, Unavailable)
    assert budget.stage_timeout_s("rerank", 300) == pytest.approx(0.021)


def test_an_exhausted_or_reserved_budget_skips_the_stage(clock: Clock) -> None:
    spent = Budget.for_request(1000, 0, None)
    clock.now += 1.5
    for stage in STAGE_ORDER:
        with pytest.raises(NoBudgetLeft):
            spent.stage_timeout_s(stage, 300)
    # 70 ms with 20 ms per reserve: the features read would leave the later stages less than their reserves.
    reserved = Budget.for_request(70, 20, None)
    with pytest.raises(NoBudgetLeft, match="70 ms budget"):
        reserved.stage_timeout_s("features", 300)
    assert reserved.stage_timeout_s("candidate", 300) == pytest.approx(0.01)
    no_time = Budget.for_request(1000, 0, 0.0)  # the caller's deadline has passed already
    with pytest.raises(NoBudgetLeft, match="0 ms budget"):
        no_time.stage_timeout_s("features", 300)
