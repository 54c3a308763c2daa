from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class CandidateSettings(ServerSettings):
    """Settings of the candidate service (env prefix RECSYS_CANDIDATE_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_CANDIDATE_", extra="ignore")

    port: int = Field(50052, ge=0, le=65535)
    search_threads: int = Field(2, ge=1, description="Threads running index searches.")
