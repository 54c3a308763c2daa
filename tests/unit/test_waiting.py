"""The one way tests wait: `eventually` returns the first truthy value, fails with what it last saw."""

from __future__ import annotations

import asyncio
import time

import pytest

from ..waiting import eventually, eventually_async


def test_returns_the_first_truthy_value_of_the_check() -> None:
    values = iter([None, 0, [], [1, 2]])
    assert eventually(lambda: next(values), interval=0.001) == [1, 2]


def test_an_assertion_in_the_check_means_not_yet() -> None:
    calls = []

    def check() -> str:
        calls.append(1)
        assert len(calls) >= 3, "not yet"
        return "done"

    assert eventually(check, interval=0.001) == "done" and len(calls) == 3


def test_a_timeout_fails_with_the_message_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as info:
        eventually(lambda: 0, timeout=0.2, interval=0.05, message="the writer flushes")
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0, "it waits for the timeout and not much longer"
    text = str(info.value)
    assert text.startswith("the writer flushes: still not true after") and "last returned 0" in text


def test_a_timeout_reports_the_last_exception() -> None:
    def check() -> None:
        raise AssertionError("3 rows, expected 7")

    with pytest.raises(pytest.fail.Exception, match=r"last raised AssertionError: 3 rows, expected 7"):
        eventually(check, timeout=0.05, interval=0.01)


def test_other_exceptions_propagate_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise KeyError("broken check")

    with pytest.raises(KeyError):
        eventually(check, timeout=5)
    assert len(calls) == 1


def test_retry_on_takes_a_function_of_the_exception() -> None:
    errors = [ConnectionError("refused"), ConnectionError("refused")]

    def check() -> str:
        if errors:
            raise errors.pop()
        return "connected"

    retry = lambda exc: isinstance(exc, ConnectionError) and "refused" in str(exc)  # noqa: E731
    assert eventually(check, interval=0.001, retry_on=retry) == "connected"
    with pytest.raises(ConnectionError, match="reset"):
        eventually(lambda: (_ for _ in ()).throw(ConnectionError("reset")), retry_on=retry)


def test_the_last_attempt_happens_at_the_deadline() -> None:
    """A condition that becomes true during the final pause is still seen: the pause is cut to the deadline."""
    ready_at = time.monotonic() + 0.15
    assert eventually(lambda: time.monotonic() >= ready_at, timeout=0.2, interval=10)


def test_rejects_a_non_positive_timeout_or_interval() -> None:
    with pytest.raises(ValueError):
        eventually(lambda: True, timeout=0)
    with pytest.raises(ValueError):
        eventually(lambda: True, interval=0)


async def test_the_async_variant_awaits_the_check_and_lets_the_loop_run() -> None:
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)

    async def check() -> bool:
        return flag.is_set()

    assert await eventually_async(check, timeout=2, interval=0.01) is True
    assert await eventually_async(lambda: "sync checks too", timeout=1) == "sync checks too"


async def test_the_async_variant_fails_like_the_sync_one() -> None:
    async def check() -> None:
        raise AssertionError("still 0 written")

    with pytest.raises(pytest.fail.Exception, match=r"^impressions: .* last raised AssertionError: still 0 written"):
        await eventually_async(check, timeout=0.05, interval=0.01, message="impressions")
