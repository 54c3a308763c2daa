"""The interaction event log behind `RecordFeedback`.

`EventLog` is the interface. Two implementations keep the same contract (tests/services/test_event_log.py
runs one suite against both):

* `PostgresEventLog` (`RECSYS_GATEWAY_EVENT_LOG_DSN` set): the production log, shared by every gateway replica;
* `SqliteEventLog` (the DSN empty): an embedded file for a single process, the default for local runs.

The event id is the idempotency key, so a retried batch is stored once. A batch is one transaction: it is
either durably stored or `append` raises `Unavailable` (and the client retries with the same ids) — never
acknowledged and lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    value: float
    timestamp: float  # seconds since the epoch
    device: str = ""
    surface: str = ""


@dataclass(frozen=True)
class Impression:
    """One item of one Recommend answer, at its position (0 = first)."""

    request_id: str
    position: int
    user_id: str
    item_id: str
    bundle_version: str
    source: str
    score: float
    retrieval: float
    ranking: float
    rerank: float
    degraded: str  # comma-separated degraded stages of the answer, "" when none
    timestamp: float  # seconds since the epoch


class EventLog(Protocol):
    async def open(self) -> None:
        """Connects and brings the schema up to date; idempotent. May leave the log unreachable (then
        `append` raises Unavailable until it is reachable) but never raises for a dependency being down."""
        ...

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Stores the events not stored yet, in one transaction; returns those that were new (the rest were
        duplicates of stored event ids). Raises Unavailable when the batch may not have been stored."""
        ...

    async def count(self) -> int:
        """How many events are stored."""
        ...

    async def append_impressions(self, impressions: Sequence[Impression]) -> None:
        """Stores impressions in one transaction; rows already stored (same request and position) are kept.
        Raises Unavailable when the batch may not have been stored."""
        ...

    async def count_impressions(self) -> int: ...

    async def close(self) -> None: ...


def open_event_log(settings: GatewaySettings) -> EventLog:
    """The event log the settings ask for (not opened yet): PostgreSQL when a DSN is set, SQLite otherwise."""
    if settings.event_log_dsn:
        from services.gateway.eventlog.postgres import PostgresEventLog

        return PostgresEventLog(
            settings.event_log_dsn,
            schema=settings.event_log_schema,
            max_connections=settings.event_log_pool_size,
            timeout_s=settings.event_log_timeout_s,
        )
    from services.gateway.eventlog.sqlite import SqliteEventLog

    return SqliteEventLog(settings.event_log_path)


__all__ = ["Event", "EventLog", "Impression", "open_event_log"]
