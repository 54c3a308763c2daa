"""Outbound gRPC channels: created once per upstream, reused by every call.

Retries are declared in the service config and only for UNAVAILABLE (safe for our idempotent reads);
deadlines are set per call by the caller. Trace context travels in metadata via the OTel interceptors.
"""

from __future__ import annotations

import json

import grpc

from services.common.server import MAX_MESSAGE_BYTES
from services.common.telemetry import client_interceptors


def service_config(service_names: list[str], max_attempts: int = 3) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": name} for name in service_names],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(
    address: str, service_names: list[str], credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """A long-lived channel with retries for UNAVAILABLE; TLS when `credentials` are given."""
    options = [
        ("grpc.service_config", service_config(service_names)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=options, interceptors=client_interceptors())
    return grpc.aio.insecure_channel(address, options=options, interceptors=client_interceptors())
