from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class RerankSettings(ServerSettings):
    """Settings of the rerank service (env prefix RECSYS_RERANK_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_RERANK_", extra="ignore")

    port: int = Field(50054, ge=0, le=65535)
