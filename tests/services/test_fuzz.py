"""The public API under fuzzed input: every field drawn from hostile strategies (unicode, huge and negative
numbers, NaN, unknown enum values, oversized lists) and raw random bytes. Every answer must be OK or a precise
client-error status without a traceback, and the gateway must keep serving afterwards.

Hypothesis drives a blocking client from a worker thread while the in-process gateway keeps running on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import math

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

ids = st.one_of(
    st.sampled_from(["196", "1", "50", "", " ", "0", "-1", "196;drop table", "x" * 65, "\x00", "🎬", "1682", "9999"]),
    st.text(max_size=80),
)
int32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 10, 100, 101, -1]))
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
enum_value = st.integers(-5, 2**31 - 1)
timestamps = st.builds(Timestamp, seconds=st.integers(-62135596800, 253402300799), nanos=st.integers(0, 999_999_999))
contexts = st.builds(
    common_pb2.RequestContext, request_time=timestamps, device=st.integers(0, 20), locale=st.text(max_size=40),
    surface=st.text(max_size=40),
)  # fmt: skip
filters = st.builds(
    common_pb2.ItemFilter,
    include_genres=st.lists(st.one_of(st.sampled_from(["Comedy", "Drama"]), st.text(max_size=20)), max_size=5),
    exclude_genres=st.lists(st.one_of(st.sampled_from(["Horror"]), st.text(max_size=20)), max_size=5),
)
recommend = st.builds(
    gateway_pb2.RecommendRequest, user_id=ids, context=contexts, count=int32, filter=filters,
    exclude_item_ids=st.lists(ids, max_size=30), diversity=floats, explain=st.booleans(),
    diversity_method=st.integers(0, 5), graph_weight=floats, affinity_weight=floats,
)  # fmt: skip
similar = st.builds(gateway_pb2.SimilarItemsRequest, item_id=ids, count=int32)
events = st.builds(
    gateway_pb2.FeedbackEvent, event_id=ids, user_id=ids, item_id=ids, type=st.integers(0, 6), value=floats,
    timestamp=timestamps, context=contexts,
)  # fmt: skip
feedback = st.builds(gateway_pb2.RecordFeedbackRequest, events=st.lists(events, max_size=20))


def _check(call, request) -> None:  # type: ignore[no-untyped-def]
    try:
        call(request, timeout=10)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        assert code in CLIENT_ERRORS, f"{code} {details!r} for {request!r}"
        assert details and "Traceback" not in details and 'File "' not in details


def _fuzz(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)

        @FUZZ
        @given(recommend)
        def fuzz_recommend(request: gateway_pb2.RecommendRequest) -> None:
            _check(stub.Recommend, request)

        @FUZZ
        @given(similar)
        def fuzz_similar(request: gateway_pb2.SimilarItemsRequest) -> None:
            _check(stub.SimilarItems, request)

        @FUZZ
        @given(feedback)
        def fuzz_feedback(request: gateway_pb2.RecordFeedbackRequest) -> None:
            _check(stub.RecordFeedback, request)

        raw = channel.unary_unary(
            "/recsys.gateway.v1.GatewayService/Recommend",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )

        @FUZZ
        @given(st.binary(max_size=512))
        def fuzz_bytes(payload: bytes) -> None:
            try:
                raw(payload, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in CLIENT_ERRORS, f"{exc.code()} {exc.details()!r}"
                assert "Traceback" not in (exc.details() or "")

        fuzz_recommend()
        fuzz_similar()
        fuzz_feedback()
        fuzz_bytes()
        reply = stub.Recommend(gateway_pb2.RecommendRequest(user_id="196", count=5), timeout=10)
        assert len(reply.items) == 5 and not math.isnan(reply.items[0].score)


async def test_public_api_survives_fuzzed_input(gateway_server) -> None:
    await asyncio.to_thread(_fuzz, f"127.0.0.1:{gateway_server.port}")
