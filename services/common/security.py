"""Transport security and the gateway's bearer token, both off by default.

TLS (RECSYS_TLS_*): with a certificate and key, every server listens with TLS; with `require_client_cert`
it also demands a client certificate signed by `ca_file` (mTLS). With `ca_file`, the gateway's channels to
the stages verify the servers against it and present this process's certificate (for mTLS). One set of
variables per process: in Kubernetes each pod mounts its own certificate (e.g. from cert-manager).

Bearer token (RECSYS_GATEWAY_AUTH_TOKEN): when set, every gateway call except health checks and reflection
must carry `authorization: Bearer <token>`; anything else is UNAUTHENTICATED. Compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Calls that stay open without a token: probes and tooling.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TlsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_TLS_", extra="ignore")

    cert_file: Path | None = Field(None, description="PEM certificate of this process (server and client).")
    key_file: Path | None = Field(None, description="PEM private key of cert_file.")
    ca_file: Path | None = Field(None, description="PEM CA bundle: verifies peers (servers; clients under mTLS).")
    require_client_cert: bool = Field(False, description="Servers demand a client certificate signed by ca_file.")

    @model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("RECSYS_TLS_CERT_FILE and RECSYS_TLS_KEY_FILE are set together")
        if self.require_client_cert and (self.ca_file is None or self.cert_file is None):
            raise ValueError("require_client_cert needs RECSYS_TLS_CA_FILE and a server certificate")
        return self

    @property
    def server_enabled(self) -> bool:
        return self.cert_file is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.cert_file is not None and self.key_file is not None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            require_client_auth=self.require_client_cert,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Credentials for channels to other services; None means plaintext (no CA configured)."""
        if self.ca_file is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: SecretStr) -> None:
        self._expected = f"Bearer {token.get_secret_value()}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(UNAUTHENTICATED_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return handler

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")

        return grpc.unary_unary_rpc_method_handler(
            deny,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
