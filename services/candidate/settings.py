from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class CandidateSettings(ServerSettings):
    """Settings of the candidate service (env prefix RECSYS_CANDIDATE_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_CANDIDATE_", extra="ignore")

    port: int = Field(50052, ge=0, le=65535)
    search_threads: int = Field(2, ge=1, description="Threads running index searches when they run in a pool.")
    compute: Literal["auto", "inline", "pool"] = Field(
        "auto",
        description="Where searches run (services/common/compute.py): inline on the event loop, in the "
        "search_threads pool, or auto: inline for an exact index (about a millisecond at up to flat_max_items), "
        "the pool for HNSW/IVF, whose longer searches release the GIL.",
    )

    # --- the ANN index (see docs/retrieval.md) ---
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="auto: the bundle contract's `index`, else flat below flat_max_items, else ivf."
    )
    # Measured here: flat top-500 costs ~0.06 ms per 1k items (0.6 ms at 10k); IVF (nprobe 80) ~3 ms at 1M.
    flat_max_items: int = Field(20_000, ge=0, description="auto picks exact search (IndexFlatIP) below this.")
    hnsw_m: int | None = Field(None, ge=4, description="HNSW links per node (default 32).")
    hnsw_ef_construction: int | None = Field(None, ge=8, description="HNSW build beam (default 64).")
    hnsw_ef_search: int | None = Field(None, ge=8, description="HNSW search beam; at least k is used (default 128).")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF lists (default about 4*sqrt(n)).")
    ivf_nprobe: int | None = Field(None, ge=1, description="IVF lists probed per query (default 80).")
    # An item's neighbours lie in its own and the adjacent IVF lists / HNSW region, unlike a user query (a mix of
    # tastes between clusters): at 1M items nprobe 20 kept item-to-item recall@84 >= 0.997 on both benchmark
    # catalogues, at half the search time of 80 (docs/benchmarks.md).
    item_query_effort: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="Share of the search beam (efSearch, nprobe) for item-to-item queries (neighbours, SimilarItems).",
    )
    build_threads: int = Field(2, ge=1, description="OpenMP threads while building an index (1 while serving).")
    exact_filter_max_rows: int = Field(
        20_000, ge=0, description="A filter passing at most this many items is answered by exact search over them."
    )
    # Item-to-item queries read precomputed neighbour lists instead of searching (artifacts/ann_index.py,
    # NeighbourTable): width x 8 bytes per item and one n x n product at load (10k items: 20 MB, ~1 s).
    neighbour_table_max_items: int = Field(
        10_000, ge=0, description="Precompute each item's nearest items for catalogues up to this size (0 = off)."
    )
    neighbour_table_width: int = Field(
        256, ge=1, description="Neighbours kept per item; a query needing more allowed ones searches instead."
    )

    # --- candidate sources and their quotas (shares of `count`; unused shares go to the others) ---
    quota_embedding: float = Field(0.6, ge=0, le=1, description="Two-tower ANN of the user's query vector.")
    quota_neighbours: float = Field(0.2, ge=0, le=1, description="Item-to-item neighbours of the recent history.")
    # 0.3 chosen on the validation part: candidate recall@500 0.875 -> 0.951 (docs/evaluation.md).
    quota_affinity: float = Field(
        0.3, ge=0, le=1, description="Top items by the item-to-item (DLAE) weights over the user's whole history."
    )
    quota_segment: float = Field(
        0.1, ge=0, le=1, description="Popular in the segment / trending, for users without a history of their own."
    )
    quota_fresh: float = Field(0.05, ge=0, le=1, description="Newest releases and items added at runtime.")
    cold_start_source: Literal["popular", "trending"] = Field(
        "popular", description="What fills the answer (all of it for a cold-start user): popular or trending."
    )
    affinity_cache_users: int = Field(
        4096,
        ge=0,
        description="Users whose bundle-history affinity totals are kept (n floats each; 0 = recompute every time).",
    )
    neighbour_history_items: int = Field(5, ge=1, le=50, description="Recent items whose neighbours are fetched.")
    query_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads of the query/item towers.")

    # --- live operation ---
    refresh_seconds: float = Field(60.0, ge=0, description="How often to look for a new bundle (0 = never).")
    recall_sample_rate: float = Field(
        0.01, ge=0, le=1, description="Share of ANN queries also answered exactly off the request path."
    )
    recall_k: int = Field(100, ge=1, description="k of the sampled recall@k.")
    max_admin_items: int = Field(1000, ge=1, description="Items per UpsertItems/RemoveItems call.")

    @model_validator(mode="after")
    def _quotas_fit(self) -> CandidateSettings:
        total = (
            self.quota_embedding + self.quota_neighbours + self.quota_affinity + self.quota_segment + self.quota_fresh
        )
        if total <= 0:
            raise ValueError("at least one source quota must be positive")
        return self
