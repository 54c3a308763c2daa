"""Tracing and logging, wired once for every process.

Exporters follow the standard variables: OTEL_TRACES_EXPORTER = none (default) | console | otlp | file, with
OTEL_EXPORTER_OTLP_ENDPOINT for otlp and RECSYS_TRACES_FILE (JSON lines, one span per line; `{service}` in
the path becomes the service name) for file;
OTEL_SERVICE_NAME overrides the service name. W3C trace context is propagated in gRPC metadata by the
OpenTelemetry gRPC interceptors. Spans of our own carry `recsys.*` attributes.

Metrics: OTEL_METRICS_EXPORTER = none (default) | prometheus | otlp | console; prometheus serves /metrics on
RECSYS_METRICS_PORT (each process its own port). `metrics()` holds the instruments every service records.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult


def configure_tracing(service_name: str) -> None:
    """Installs the global tracer provider once per process, with exporters from OTEL_TRACES_EXPORTER."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter in _exporters_from_env(service_name):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _exporters_from_env(service_name: str) -> list[SpanExporter]:
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "file":
            path = os.environ.get("RECSYS_TRACES_FILE", "traces-{service}.jsonl")
            exporters.append(JsonLinesSpanExporter(path.replace("{service}", service_name)))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; use none, console, otlp or file")
    return exporters


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line: for tests and for offline trace analysis."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx, parent = span.get_span_context(), span.parent
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "kind": span.kind.name,
                        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
                        "span_id": format(ctx.span_id, "016x") if ctx else "",
                        "parent_id": format(parent.span_id, "016x") if parent else None,
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": {k: _jsonable(v) for k, v in (span.attributes or {}).items()},
                    }
                )
            )
        with self._lock, open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


@dataclass(frozen=True)
class Metrics:
    """The instruments every service records into (no-ops until a meter provider is configured)."""

    stage_latency_ms: Histogram  # attributes: stage, outcome (ok | degraded)
    requests: Counter  # attributes: service, method, code
    fallbacks: Counter  # attributes: stage, fallback
    ann_recall: Histogram  # recall@k of the ANN against exact search, sampled


_METRICS: Metrics | None = None


def metrics() -> Metrics:
    global _METRICS  # noqa: PLW0603 - one set of instruments per process, created on first use
    if _METRICS is None:
        meter = otel_metrics.get_meter("recsys")
        _METRICS = Metrics(
            stage_latency_ms=meter.create_histogram("recsys.stage.latency", unit="ms", description="Stage call time"),
            requests=meter.create_counter("recsys.requests", description="Calls served, by status code"),
            fallbacks=meter.create_counter("recsys.fallbacks", description="Degraded answers, by stage and fallback"),
            ann_recall=meter.create_histogram("recsys.ann.recall", description="ANN recall@k against exact search"),
        )
    return _METRICS


def configure_metrics(service_name: str) -> None:
    """Installs the global meter provider with the reader OTEL_METRICS_EXPORTER names (none by default)."""
    names = [n.strip() for n in os.environ.get("OTEL_METRICS_EXPORTER", "none").split(",") if n.strip()]
    readers: list[Any] = []
    for name in names:
        if name == "none":
            continue
        if name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import start_http_server

            start_http_server(int(os.environ.get("RECSYS_METRICS_PORT", "9464")), addr="0.0.0.0")
            readers.append(PrometheusMetricReader())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
        else:
            raise ValueError(f"OTEL_METRICS_EXPORTER={name!r} is not supported; use none, prometheus, otlp or console")
    if readers:
        name = os.environ.get("OTEL_SERVICE_NAME", service_name)
        otel_metrics.set_meter_provider(
            MeterProvider(resource=Resource.create({"service.name": name}), metric_readers=readers)
        )


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every unary call by method and final status code."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner, method, service = handler.unary_unary, handler_call_details.method, self.service

        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                code = (context.code() or grpc.StatusCode.UNKNOWN).name if hasattr(context, "code") else "UNKNOWN"
                raise
            finally:
                metrics().requests.add(1, {"service": service, "method": method, "code": code})

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def server_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def client_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, carrying the current trace and span ids when there is a span."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
