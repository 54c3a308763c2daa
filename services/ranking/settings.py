from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class RankingSettings(ServerSettings):
    """Settings of the ranking service (env prefix RECSYS_RANKING_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_RANKING_", extra="ignore")

    port: int = Field(50053, ge=0, le=65535)
    score_threads: int = Field(2, ge=1, description="Threads encoding features and running the in-process model.")
    backend: Literal["inprocess", "triton"] = Field(
        "inprocess", description="Where the model runs: in this process (onnxruntime) or on a Triton server."
    )
    triton_url: str = Field("127.0.0.1:8001", description="host:port of Triton's gRPC endpoint (backend=triton).")
    backend_timeout_ms: int = Field(150, ge=1, description="Deadline of one inference call on the backend.")
    refresh_seconds: float = Field(
        60.0, ge=0, description="How often to look for a new bundle and re-read item features; 0 turns it off."
    )
