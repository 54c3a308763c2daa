"""A Python client of the public gateway API: channels (TLS, bearer token), request vocabularies and
readable renderings of the answers. The `recsys` command and the developer tools build on it."""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2

DEFAULT_ADDRESS = "127.0.0.1:50051"
FEEDBACK_TYPES = {
    "view": gateway_pb2.FEEDBACK_TYPE_VIEW,
    "click": gateway_pb2.FEEDBACK_TYPE_CLICK,
    "rating": gateway_pb2.FEEDBACK_TYPE_RATING,
    "purchase": gateway_pb2.FEEDBACK_TYPE_PURCHASE,
}
DEVICES: dict[str, Any] = {
    name.removeprefix("DEVICE_TYPE_").lower(): value for name, value in common_pb2.DeviceType.items()
}
# The named methods; unset (UNSPECIFIED) leaves the choice to the rerank service.
DIVERSITY_METHODS: dict[str, Any] = {
    name.removeprefix("DIVERSITY_METHOD_").lower(): value
    for name, value in common_pb2.DiversityMethod.items()
    if value != common_pb2.DIVERSITY_METHOD_UNSPECIFIED
}


def recommend_request(
    user_id: str,
    count: int = 10,
    *,
    genres: Sequence[str] = (),
    exclude_genres: Sequence[str] = (),
    exclude_item_ids: Sequence[str] = (),
    diversity: float | None = None,
    diversity_method: str | None = None,
    device: str = "unspecified",
    surface: str = "",
    explain: bool = True,
) -> gateway_pb2.RecommendRequest:
    """A Recommend request; `device` and `diversity_method` by name (keys of DEVICES, DIVERSITY_METHODS), None
    leaves diversity and its method to the service."""
    request = gateway_pb2.RecommendRequest(
        user_id=user_id,
        count=count,
        context=common_pb2.RequestContext(device=DEVICES[device], surface=surface),
        filter=common_pb2.ItemFilter(include_genres=genres, exclude_genres=exclude_genres),
        exclude_item_ids=exclude_item_ids,
        explain=explain,
    )
    if diversity is not None:
        request.diversity = diversity
    if diversity_method is not None:
        request.diversity_method = DIVERSITY_METHODS[diversity_method]
    return request


def feedback_request(
    user_id: str, item_id: str, kind: str = "click", value: float = 1.0, event_id: str | None = None
) -> gateway_pb2.RecordFeedbackRequest:
    """One interaction of type `kind` (a key of FEEDBACK_TYPES) happening now; `event_id` is the idempotency key
    (a new one when None), so a retried request is recorded once."""
    event = gateway_pb2.FeedbackEvent(
        event_id=event_id or uuid.uuid4().hex, user_id=user_id, item_id=item_id, type=FEEDBACK_TYPES[kind], value=value
    )
    event.timestamp.FromNanoseconds(time.time_ns())
    return gateway_pb2.RecordFeedbackRequest(events=[event])


def format_recommendations(user_id: str, reply: gateway_pb2.RecommendResponse) -> str:
    """A readable table of a Recommend answer."""
    head = f"Recommendations for user {user_id} (bundle {reply.bundle_version}, request {reply.request_id[:8]})"
    notes = []
    if reply.cold_start:
        notes.append("cold start: popular items")
    if reply.degraded_stages:
        stages = ", ".join(common_pb2.Stage.Name(s).removeprefix("STAGE_").lower() for s in reply.degraded_stages)
        notes.append(f"degraded: {stages}")
    lines = [head + (f" [{'; '.join(notes)}]" if notes else "")]
    if not reply.items:
        lines.append("  (no items match the request)")
    lines.append(f"  {'#':>2}  {'item':>6}  {'score':>6}  {'rank':>5}  {'title':<44} genres")
    for i, item in enumerate(reply.items, 1):
        title = f"{item.info.title} ({item.info.year})" if item.info.year else item.info.title
        lines.append(
            f"  {i:>2}  {item.item_id:>6}  {item.score:6.3f}  {item.stage_scores.ranking:5.3f}  "
            f"{title[:44]:<44} {', '.join(item.info.genres)}"
        )
        if item.reason:
            lines.append(f"{'':>28}↳ {item.reason}")
    return "\n".join(lines)


def format_similar(item_id: str, reply: gateway_pb2.SimilarItemsResponse) -> str:
    lines = [f"Items similar to {item_id} (bundle {reply.bundle_version})"]
    for i, item in enumerate(reply.items, 1):
        title = f"{item.info.title} ({item.info.year})" if item.info.year else item.info.title
        lines.append(f"  {i:>2}  {item.item_id:>6}  {item.score:6.3f}  {title[:44]:<44} {', '.join(item.info.genres)}")
    return "\n".join(lines)


def format_feedback(reply: gateway_pb2.RecordFeedbackResponse) -> str:
    text = f"accepted {reply.accepted} event(s), {reply.duplicates} already recorded"
    return text + "".join(f"\n  rejected #{r.index} {r.event_id}: {r.reason}" for r in reply.rejected)


def to_json(message: Any) -> str:
    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)


def open_channel(address: str, ca_file: str | None = None, token: str | None = None) -> grpc.Channel:
    """A channel to the gateway: TLS verified against `ca_file` when given, a bearer token on every call."""
    raw = _raw_channel(address, ca_file)
    return grpc.intercept_channel(raw, _BearerToken(token)) if token else raw


def _raw_channel(address: str, ca_file: str | None) -> grpc.Channel:
    if ca_file:
        with open(ca_file, "rb") as f:
            return grpc.secure_channel(address, grpc.ssl_channel_credentials(f.read()))
    return grpc.insecure_channel(address)


class _BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation, client_call_details, request):
        d = client_call_details
        metadata = [*(d.metadata or ()), self.header]
        details = _CallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)
        return continuation(details, request)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass
