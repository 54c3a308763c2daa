"""Server lifecycle shared by every service: build, load, serve, drain.

A server starts NOT_SERVING on the standard health service, loads its models/index/features off the event
loop, then reports SERVING. On SIGTERM/SIGINT it reports NOT_SERVING, lets in-flight calls finish within the
grace period, and stops. Reflection is on so that `grpcurl` works without proto files.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.errors import ErrorInterceptor
from services.common.floating_point import flush_denormals_to_zero
from services.common.settings import CommonSettings, ServerSettings
from services.common.telemetry import (
    MetricsInterceptor,
    configure_logging,
    configure_metrics,
    configure_tracing,
    server_interceptors,
)

log = logging.getLogger(__name__)

# Large candidate batches stay well under this; it bounds what a bad client can make us allocate.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ServiceApp(Protocol):
    """What a service plugs into the shared lifecycle."""

    #: Fully qualified gRPC service names, e.g. "recsys.candidate.v1.CandidateService".
    service_names: Sequence[str]
    common: CommonSettings
    #: Extra server interceptors of this service (the gateway's bearer-token check); run before the handlers.
    interceptors: Sequence[grpc.aio.ServerInterceptor]

    def add_to_server(self, server: grpc.aio.Server) -> None: ...

    async def load(self) -> None:
        """Loads models, index and features; raises if the service cannot serve."""

    async def warm_up(self) -> None:
        """Runs representative work through what `load` built, so that the first real request does not pay
        one-time costs (onnxruntime's first run, Feast's first read, connecting channels). A dependency that is
        not up yet is logged and skipped; only a fault that would fail every request may raise (and fail the start)."""

    async def close(self) -> None:
        """Releases clients and pools."""


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    app: ServiceApp

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.app.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.app.close()


async def build_server(
    app: ServiceApp, host: str = "127.0.0.1", port: int = 0, max_concurrent_rpcs: int | None = None
) -> RunningServer:
    """Builds and starts a server for `app` on host:port (0 = a free port); returns it NOT_SERVING."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=[
            *server_interceptors(),
            MetricsInterceptor(app.service_names[0]),
            *app.interceptors,
            ErrorInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    app.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*app.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    tls = app.common.tls
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, tls.server_credentials())
        if tls.server_enabled
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    await server.start()
    running = RunningServer(server=server, port=bound, health=health_servicer, app=app)
    await running.set_serving(False)
    return running


def freeze_loaded_heap() -> None:
    """Moves everything loaded so far out of the garbage collector's reach.

    Models, catalogues and the Feast SDK leave ~350k long-lived objects; a full collection over them took
    ~330 ms on the development machine and showed up as request-latency spikes and deadline misses.
    """
    gc.collect()
    gc.freeze()


async def start_and_load(app: ServiceApp, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Starts the server NOT_SERVING, loads the app, then flips health to SERVING."""
    running = await build_server(app, host, port)
    try:
        await load_and_warm_up(app)
    except BaseException:
        await running.stop(0)
        raise
    freeze_loaded_heap()
    await running.set_serving(True)
    return running


async def load_and_warm_up(app: ServiceApp) -> None:
    """Loads the app, then warms it, so that the first request after SERVING is not the slowest one."""
    await app.load()
    await app.warm_up()


def run_service(name: str, app: ServiceApp, settings: ServerSettings) -> None:
    """Entry point of a service process: runs until SIGTERM/SIGINT, then drains and exits."""
    flushed = flush_denormals_to_zero()  # before any thread exists, so that every thread inherits it
    common = CommonSettings()
    configure_logging(common.log_level, common.log_json)
    if not flushed:
        log.warning("subnormal floats are computed at full IEEE precision here: model inference may run slower")
    configure_tracing(name)
    configure_metrics(name)
    asyncio.run(_serve_forever(name, app, settings))


async def _serve_forever(name: str, app: ServiceApp, settings: ServerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await build_server(app, settings.host, settings.port, settings.max_concurrent_rpcs)
    log.info("%s listening on %s:%d (NOT_SERVING while loading)", name, settings.host, running.port)
    load = asyncio.create_task(load_and_warm_up(app))
    done, _ = await asyncio.wait({load, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if load in done and load.exception() is None:
        freeze_loaded_heap()
        await running.set_serving(True)
        log.info("%s SERVING on port %d", name, running.port)
        await stop.wait()
    elif load in done:
        log.error("%s failed to load: %s", name, load.exception())
    log.info("%s shutting down (grace %.1fs)", name, settings.grace_seconds)
    load.cancel()
    await running.stop(settings.grace_seconds)
    if load.done() and not load.cancelled() and load.exception() is not None:
        raise SystemExit(1)
