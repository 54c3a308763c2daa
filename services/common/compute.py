"""Where a request's CPU work runs: inline on the event loop thread, or in a worker pool.

A worker-pool hop is the usual way to keep CPU work off the event loop, but it is not free: handing the call to a
thread and back costs ~0.1 ms and the two threads then contend for the GIL. At MovieLens size a request's work
(an exact search, a ranker call, a DPP pass) takes about a millisecond and holds the GIL for most of it, so the
hop buys no parallelism and adds latency: measured at 50 requests/s over the four services, inline work took
1-1.8 ms of CPU off every request and 2-4 ms off p50 (docs/benchmarks.md, "Where the work runs"). Work that is
long and releases the GIL (IVF/HNSW search over a million items, a large ranker on several cores) belongs in a
pool, where other requests' I/O keeps flowing while it runs.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Literal, TypeVar

T = TypeVar("T")

ComputeMode = Literal["inline", "pool"]


class ComputeRunner:
    """Runs one request's CPU work in the chosen place; the pool is created only when it is used."""

    def __init__(self, mode: ComputeMode, threads: int, name: str) -> None:
        self.mode = mode
        self.executor: Executor | None = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) if mode == "pool" else None
        )

    async def run(self, fn: Callable[[], T]) -> T:
        if self.executor is None:
            return fn()
        # The pool thread sees the caller's context (current span, log trace id), as asyncio.to_thread does.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, fn)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)
