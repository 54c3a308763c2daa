from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.compute import ComputeMode
from services.common.settings import ServerSettings


class RerankSettings(ServerSettings):
    """Settings of the rerank service (env prefix RECSYS_RERANK_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_RERANK_", extra="ignore")

    port: int = Field(50054, ge=0, le=65535)
    compute: ComputeMode = Field(
        "inline",
        description="Where a rerank runs (services/common/compute.py): inline on the event loop (about a "
        "millisecond for 500 candidates) or in a pool of compute_threads.",
    )
    compute_threads: int = Field(2, ge=1, description="Threads reranking when compute is pool.")
    diversity_method: Literal["mmr", "dpp", "calibrated"] = Field(
        "mmr", description="Diversity method when a request names none."
    )
    graph_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="Weight of the graph affinity against the ranking score (request overrides)."
    )
    # 0.7 was best on the validation part (NDCG@10 and recall@10; docs/evaluation.md), with 0.5 a close second.
    affinity_weight: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Weight of the candidate stage's item-to-item (DLAE) history affinity (request overrides).",
    )
    rules_file: Path | None = Field(None, description="Business rules (YAML or JSON, services/rerank/rules.py).")
