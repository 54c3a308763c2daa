"""One Recommend's latency budget: `request_budget_ms`, or the caller's deadline when that is sooner.

A stage's deadline is the smaller of its own and what is left, less a reserve for each stage after it (and one
for the answer), so one slow stage cannot spend the time the others need.
"""

from __future__ import annotations

import time

from services.common.errors import Unavailable

#: The stages of a Recommend, in request order: the budget reserves time for the stages after each one.
STAGE_ORDER = ("features", "candidate", "ranking", "rerank")


class NoBudgetLeft(Unavailable):
    """A stage was skipped: the request's budget had no time left for it."""


class Budget:
    """What is left of one Recommend's latency budget."""

    #: Below this a call cannot succeed; the stage is skipped and degraded instead of being called.
    MIN_STAGE_S = 0.002

    def __init__(self, total_s: float, reserve_s: float) -> None:
        self.total_s = total_s
        self.reserve_s = reserve_s
        self.ends_at = time.monotonic() + total_s

    @classmethod
    def for_request(cls, budget_ms: int, reserve_ms: int, caller_timeout_s: float | None) -> Budget:
        """`caller_timeout_s`: the time left before the caller's deadline (None: the caller set none)."""
        total = budget_ms / 1000
        if caller_timeout_s is not None:
            total = min(total, caller_timeout_s)
        return cls(total, reserve_ms / 1000)

    def stage_timeout_s(self, stage: str, stage_timeout_ms: int) -> float:
        """The deadline of `stage`'s call (one of STAGE_ORDER); raises NoBudgetLeft when too little time is left
        to make it."""
        later_stages = len(STAGE_ORDER) - 1 - STAGE_ORDER.index(stage)
        left = self.ends_at - time.monotonic() - self.reserve_s * (later_stages + 1)
        timeout = min(stage_timeout_ms / 1000, left)
        if timeout < self.MIN_STAGE_S:
            raise NoBudgetLeft(f"no time left in the request's {self.total_s * 1000:.0f} ms budget")
        return timeout
