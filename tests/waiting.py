"""Waiting for something to become true, the one way tests do it.

`eventually(check)` calls `check` until it returns a truthy value and returns that value; `check` may also
raise one of `retry_on` (AssertionError by default) to mean "not yet". When `timeout` passes first, the test
fails with `message`, the number of attempts and the last value or exception `check` gave. Any other exception
propagates at once: a broken check fails fast instead of timing out.

`await eventually_async(check)` is the same on the running event loop; `check` may be a plain function or
return an awaitable (an `async def`, or a lambda calling one). One attempt is not cut short at the timeout: a
check that can hang bounds itself (a gRPC call with its own `timeout=`).

A sleep that is itself what a test checks ("nothing is written within 0.3 s", pacing a load) is not a wait and
stays a sleep, with a comment saying why.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

#: Exception types, or a function of the exception, that mean "not true yet, try again".
RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


class _Attempts:
    """The bookkeeping both variants share: the deadline, the attempts and the last outcome."""

    def __init__(self, timeout: float, interval: float, message: str, retry_on: RetryOn) -> None:
        if timeout <= 0 or interval <= 0:
            raise ValueError(f"timeout and interval must be positive, got {timeout} and {interval}")
        self.timeout, self.interval, self.message, self.retry_on = timeout, interval, message, retry_on
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.count = 0
        self.last: object = None
        self.last_exc: BaseException | None = None

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return self.retry_on(exc)

    def failed_with(self, exc: BaseException) -> None:
        """Records `exc` as "not yet", or re-raises it when it is not one of `retry_on`."""
        if not self.retryable(exc):
            raise exc
        self.last, self.last_exc = None, exc

    def pause(self) -> float:
        """Seconds to wait before the next attempt; fails the test when the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.fail()
        return min(self.interval, remaining)

    def fail(self) -> None:
        if self.last_exc is not None:
            last = "last raised " + "".join(traceback.format_exception_only(self.last_exc)).strip()
        else:
            last = f"last returned {self.last!r}"
        elapsed = time.monotonic() - self.started
        what = self.message or "the condition did not become true"
        pytest.fail(f"{what}: still not true after {elapsed:.1f} s ({self.count} attempts); {last}")


def eventually(
    check: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    retry_on: RetryOn = (AssertionError,),
) -> T:
    """Calls `check` every `interval` seconds until it returns a truthy value, and returns that value."""
    attempts = _Attempts(timeout, interval, message, retry_on)
    while True:
        attempts.count += 1
        try:
            value = check()
        except BaseException as exc:  # re-raised by failed_with unless it is one of retry_on
            attempts.failed_with(exc)
        else:
            if value:
                return value
            attempts.last, attempts.last_exc = value, None
        time.sleep(attempts.pause())


async def eventually_async(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - how long the condition may take, not a bound on one call
    interval: float = 0.05,
    message: str = "",
    retry_on: RetryOn = (AssertionError,),
) -> T:
    """`eventually` for async tests: awaits `check()` when it is awaitable and sleeps without blocking the loop."""
    attempts = _Attempts(timeout, interval, message, retry_on)
    while True:
        attempts.count += 1
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:  # re-raised by failed_with unless it is one of retry_on
            attempts.failed_with(exc)
        else:
            if value:
                return value  # type: ignore[return-value]
            attempts.last, attempts.last_exc = value, None
        await asyncio.sleep(attempts.pause())
