from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class RankingSettings(ServerSettings):
    """Settings of the ranking service (env prefix RECSYS_RANKING_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_RANKING_", extra="ignore")

    port: int = Field(50053, ge=0, le=65535)
    score_threads: int = Field(2, ge=1, description="Threads evaluating the model.")
