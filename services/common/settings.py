"""Typed settings, read from the environment with a per-service prefix and validated at start-up.

Every service reads `RECSYS_<SERVICE>_<FIELD>` (for example RECSYS_CANDIDATE_PORT) and the shared
`RECSYS_<FIELD>` ones through `CommonSettings`. Telemetry uses the standard OTEL_* variables instead.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifacts.paths import DEFAULT_VAR, REPO_ROOT
from services.common.security import TlsSettings


class CommonSettings(BaseSettings):
    """Settings shared by all services."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    bundle_dir: Path = Field(DEFAULT_VAR / "bundles", description="Folder of published model bundles.")
    feature_repo: Path = Field(REPO_ROOT / "features", description="The Feast repository folder.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_json: bool = Field(True, description="Log one JSON object per line (with the trace id).")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="Transport security (RECSYS_TLS_*).")


class ServerSettings(BaseSettings):
    """Settings of one gRPC server; subclasses set the env prefix and default port."""

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 in containers.")
    port: int = Field(0, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    grace_seconds: float = Field(5.0, ge=0, description="How long in-flight calls may finish on SIGTERM.")
    max_candidates: int = Field(2000, ge=1, description="Largest candidate batch accepted per call.")
    max_concurrent_rpcs: int | None = Field(
        None,
        ge=1,
        description="Calls in flight beyond this are refused at once with RESOURCE_EXHAUSTED (load shedding), "
        "instead of queueing until every caller's deadline passes. None: unlimited.",
    )
