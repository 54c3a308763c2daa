"""Shared plumbing every hop relies on: channel retries (UNAVAILABLE only, declared in the service config) and
JSON logs that carry the current trace id."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from recsys.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from services.common.channels import open_channel
from services.common.telemetry import JsonFormatter

SERVICE = rerank_pb2.DESCRIPTOR.services_by_name["RerankService"].full_name


class FlakyRerank(rerank_pb2_grpc.RerankServiceServicer):
    """Fails the first `failures` calls with `code`, then answers."""

    def __init__(self, code: grpc.StatusCode, failures: int) -> None:
        self.code, self.failures, self.calls = code, failures, 0

    async def Rerank(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(self.code, f"failure {self.calls}")
        return rerank_pb2.RerankResponse(indices=[0], bundle_version="test")


async def _serve(servicer: FlakyRerank) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    rerank_pb2_grpc.add_RerankServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("code", "failures", "calls", "ok"),
    [
        (grpc.StatusCode.UNAVAILABLE, 2, 3, True),  # retried within maxAttempts 3: the caller sees success
        (grpc.StatusCode.UNAVAILABLE, 3, 3, False),  # attempts exhausted: the caller sees UNAVAILABLE
        (grpc.StatusCode.INVALID_ARGUMENT, 1, 1, False),  # never retried
        (grpc.StatusCode.DEADLINE_EXCEEDED, 1, 1, False),  # never retried (the budget is spent)
    ],
)
async def test_channels_retry_only_unavailable(code: grpc.StatusCode, failures: int, calls: int, ok: bool) -> None:
    servicer = FlakyRerank(code, failures)
    server, address = await _serve(servicer)
    channel = open_channel(address, [SERVICE])
    try:
        stub = rerank_pb2_grpc.RerankServiceStub(channel)
        request = rerank_pb2.RerankRequest(user_id="1", item_ids=["1"], scores=[1.0], count=1)
        if ok:
            assert list((await stub.Rerank(request, timeout=5)).indices) == [0]
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Rerank(request, timeout=5)
            assert info.value.code() == code
        assert servicer.calls == calls
    finally:
        await channel.close()
        await server.stop(0)


def test_json_logs_carry_the_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    formatter = JsonFormatter()
    record = logging.LogRecord("recsys.test", logging.WARNING, __file__, 1, "degraded: %s", ("ranking",), None)
    outside = json.loads(formatter.format(record))
    assert outside["msg"] == "degraded: ranking" and outside["level"] == "WARNING" and "trace_id" not in outside
    with tracer.start_as_current_span("request") as span:
        inside = json.loads(formatter.format(record))
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(ctx.span_id, "016x")
    assert trace.get_current_span().get_span_context().is_valid is False
