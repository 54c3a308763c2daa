from __future__ import annotations

from recsys.gateway.v1 import gateway_pb2
from services.gateway.feedback import check_events

NOW = 1_800_000_000.0


def _event(event_id: str = "e1", **kw: object) -> gateway_pb2.FeedbackEvent:
    fields: dict[str, object] = {
        "event_id": event_id,
        "user_id": "u1",
        "item_id": "50",
        "type": gateway_pb2.FEEDBACK_TYPE_CLICK,
        "value": 1.0,
    }
    fields.update(kw)
    event = gateway_pb2.FeedbackEvent(**fields)  # type: ignore[arg-type]
    if "timestamp" not in kw:
        event.timestamp.FromSeconds(int(NOW) - 10)
    return event


def test_valid_events_pass_and_bad_ones_are_rejected_with_reasons() -> None:
    future = gateway_pb2.FeedbackEvent(event_id="f", user_id="u", item_id="i", type=gateway_pb2.FEEDBACK_TYPE_VIEW)
    future.timestamp.FromSeconds(int(NOW) + 3600)
    request = gateway_pb2.RecordFeedbackRequest(
        events=[
            _event("ok1"),
            _event("bad-type", type=gateway_pb2.FEEDBACK_TYPE_UNSPECIFIED),
            _event("", user_id="u2"),
            _event("rating", type=gateway_pb2.FEEDBACK_TYPE_RATING, value=9.0),
            future,
            _event("ok1"),
            _event("ok2", item_id="has space"),
            _event("ok3", type=gateway_pb2.FEEDBACK_TYPE_RATING, value=4.0),
        ]
    )
    checked = check_events(request, max_future_skew_s=300, now=NOW)
    assert [e.event_id for e in checked.events] == ["ok1", "ok3"]
    reasons = {r.index: r.reason for r in checked.rejected}
    assert "not a known feedback type" in reasons[1]
    assert "event_id is required" in reasons[2]
    assert "rating must be between 1 and 5" in reasons[3]
    assert "in the future" in reasons[4]
    assert "appears twice" in reasons[5]
    assert "item_id" in reasons[6] and "malformed" in reasons[6]


def test_missing_timestamp_defaults_to_now() -> None:
    event = gateway_pb2.FeedbackEvent(event_id="x", user_id="u", item_id="i", type=gateway_pb2.FEEDBACK_TYPE_VIEW)
    checked = check_events(gateway_pb2.RecordFeedbackRequest(events=[event]), 300, now=NOW)
    assert checked.events[0].timestamp == NOW
