"""Background refresh of what a service loaded: a new bundle or re-materialised features, without a restart.

A `PeriodicRefresh` calls the service's `refresh()` every `interval_s` seconds. The service builds the new
state completely off to the side and swaps one reference, so requests already running finish on the state
they started with (double buffering). A failed refresh is logged and the service keeps serving the old state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicRefresh:
    def __init__(self, name: str, interval_s: float, refresh: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.refresh = refresh
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"refresh-{self.name}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: refresh failed; still serving the previous state", self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def close_later(close: Callable[[], Awaitable[None]], delay_s: float) -> None:
    """Closes a replaced resource once requests that still hold it have had time to finish."""
    await asyncio.sleep(delay_s)
    await close()
