from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.compute import ComputeMode
from services.common.settings import ServerSettings


class RankingSettings(ServerSettings):
    """Settings of the ranking service (env prefix RECSYS_RANKING_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_RANKING_", extra="ignore")

    port: int = Field(50053, ge=0, le=65535)
    score_threads: int = Field(2, ge=1, description="Threads encoding features and scoring when they run in a pool.")
    compute: ComputeMode = Field(
        "inline",
        description="Where feature encoding and in-process scoring run (services/common/compute.py): inline on the "
        "event loop (at up to 1,000 candidates a call is about a millisecond, less than a pool hop costs in "
        "latency) or in the score_threads pool (a larger model, or many concurrent callers on several cores).",
    )
    backend: Literal["inprocess", "triton"] = Field(
        "inprocess", description="Where the model runs: in this process (onnxruntime) or on a Triton server."
    )
    triton_url: str = Field("127.0.0.1:8001", description="host:port of Triton's gRPC endpoint (backend=triton).")
    backend_timeout_ms: int = Field(150, ge=1, description="Deadline of one inference call on the backend.")
    refresh_seconds: float = Field(
        60.0, ge=0, description="How often to look for a new bundle and re-read item features; 0 turns it off."
    )
