"""Validation of feedback events: each event is accepted or rejected with a reason, independently."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.common.validation import check_id
from services.gateway.eventlog import Event

EVENT_TYPES = {
    gateway_pb2.FEEDBACK_TYPE_VIEW: "view",
    gateway_pb2.FEEDBACK_TYPE_CLICK: "click",
    gateway_pb2.FEEDBACK_TYPE_RATING: "rating",
    gateway_pb2.FEEDBACK_TYPE_PURCHASE: "purchase",
}
RATING_RANGE = (1.0, 5.0)
EARLIEST = 631_152_000.0  # 1990-01-01: older timestamps are certainly a client bug


@dataclass(frozen=True)
class Checked:
    events: list[Event]
    rejected: list[gateway_pb2.RejectedEvent]


def check_events(
    request: gateway_pb2.RecordFeedbackRequest,
    max_future_skew_s: float,
    now: float | None = None,
    max_events: int | None = None,
) -> Checked:
    """The valid events and a reason for each rejected one. Events past `max_events` in an oversized batch are
    rejected too (the client resends them in another batch); the ones within the limit are still stored."""
    now = time.time() if now is None else now
    events: list[Event] = []
    rejected: list[gateway_pb2.RejectedEvent] = []
    seen_ids: set[str] = set()
    for index, raw in enumerate(request.events):
        if max_events is not None and index >= max_events:
            reason = f"beyond the batch limit of {max_events} events; send it in another batch"
            rejected.append(gateway_pb2.RejectedEvent(index=index, event_id=raw.event_id[:64], reason=reason))
            continue
        try:
            event = _check(raw, now, max_future_skew_s)
            if event.event_id in seen_ids:
                raise InvalidArgument(f"event_id {event.event_id!r} appears twice in this batch")
            seen_ids.add(event.event_id)
            events.append(event)
        except InvalidArgument as exc:
            rejected.append(gateway_pb2.RejectedEvent(index=index, event_id=raw.event_id[:64], reason=exc.message))
    return Checked(events=events, rejected=rejected)


def _check(raw: gateway_pb2.FeedbackEvent, now: float, max_future_skew_s: float) -> Event:
    event_id = check_id("event_id", raw.event_id)
    user_id = check_id("user_id", raw.user_id)
    item_id = check_id("item_id", raw.item_id)
    kind = EVENT_TYPES.get(raw.type)
    if kind is None:
        raise InvalidArgument(f"type {raw.type} is not a known feedback type (view, click, rating, purchase)")
    value = float(raw.value)
    if not math.isfinite(value):
        raise InvalidArgument("value must be a finite number")
    if raw.type == gateway_pb2.FEEDBACK_TYPE_RATING and not RATING_RANGE[0] <= value <= RATING_RANGE[1]:
        raise InvalidArgument(f"a rating must be between {RATING_RANGE[0]:g} and {RATING_RANGE[1]:g} (got {value:g})")
    ts = raw.timestamp.seconds + raw.timestamp.nanos / 1e9 if raw.HasField("timestamp") else now
    if ts > now + max_future_skew_s:
        raise InvalidArgument(f"timestamp is {ts - now:.0f}s in the future")
    if ts < EARLIEST:
        raise InvalidArgument("timestamp is before 1990; send seconds since the Unix epoch")
    device = common_pb2.DeviceType.Name(raw.context.device) if raw.context.device else ""
    return Event(event_id, user_id, item_id, kind, value, ts, device=device, surface=raw.context.surface[:64])
