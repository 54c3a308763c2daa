from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from artifacts.paths import DEFAULT_VAR
from services.common.settings import ServerSettings


class GatewaySettings(ServerSettings):
    """Settings of the gateway (env prefix RECSYS_GATEWAY_)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_GATEWAY_", extra="ignore")

    port: int = Field(50051, ge=0, le=65535)
    # Little's law on the development machine: ~50 Recommend/s at ~20 ms each; 32 in flight bounds the queue
    # to well under a second before the gateway sheds load with RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int | None = Field(32, ge=1, description="Calls in flight before shedding load.")
    candidate_address: str = Field("127.0.0.1:50052", description="host:port of the candidate service.")
    ranking_address: str = Field("127.0.0.1:50053", description="host:port of the ranking service.")
    rerank_address: str = Field("127.0.0.1:50054", description="host:port of the rerank service.")
    features_timeout_ms: int = Field(
        200, ge=1, description="Deadline of the Feast online read of the user's features (then defaults are used)."
    )
    candidate_timeout_ms: int = Field(300, ge=1, description="Deadline of a Retrieve call.")
    ranking_timeout_ms: int = Field(300, ge=1, description="Deadline of a Rank call.")
    rerank_timeout_ms: int = Field(300, ge=1, description="Deadline of a Rerank call.")
    request_budget_ms: int = Field(
        1000,
        ge=1,
        description="Longest a Recommend may take end to end; a caller's shorter deadline is the budget instead."
        " Each stage gets the smaller of its own deadline and what is left of the budget.",
    )
    stage_reserve_ms: int = Field(
        20,
        ge=0,
        description="Budget kept back per stage still to come (and for the answer) when a stage's deadline is"
        " cut to what is left, so a stage that hangs degrades itself, not the ones after it.",
    )
    candidate_count: int = Field(500, ge=1, description="Candidates retrieved per request.")
    ranked_count: int = Field(200, ge=1, description="Top-ranked candidates passed to rerank.")
    max_count: int = Field(100, ge=1, description="Largest `count` a client may ask for.")
    default_diversity: float = Field(0.2, ge=0.0, le=1.0, description="Diversity when the request sets none.")
    max_feedback_batch: int = Field(
        1000, ge=1, description="Most events stored per RecordFeedback call; later ones are rejected per event."
    )
    max_future_skew_s: float = Field(300.0, ge=0, description="How far in the future an event time may be.")
    event_log_path: Path = Field(
        DEFAULT_VAR / "events.db", description="SQLite event log, used when event_log_dsn is empty (one process)."
    )
    auth_token: SecretStr | None = Field(
        None, description="When set, calls must carry 'authorization: Bearer <token>' (health checks excepted)."
    )
    event_log_dsn: str = Field(
        "",
        description="PostgreSQL event log: a libpq connection string (postgresql://user@host:5432/db?sslmode=...;"
        " the password comes from PGPASSWORD). Empty keeps the embedded SQLite log at event_log_path.",
    )
    event_log_schema: str = Field(
        "recsys",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of the event log tables; created by the migrations.",
    )
    event_log_pool_size: int = Field(10, ge=1, description="Most PostgreSQL connections the gateway opens.")
    event_log_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest a RecordFeedback call waits for PostgreSQL (a connection and the insert) before"
        " answering UNAVAILABLE.",
    )
    push_features: bool = Field(
        True,
        description="After storing feedback, push each user's updated activity row to the Feast online store so"
        " the next Recommend sees it (off: features change only when the batch pipeline materialises).",
    )
    activity_push_source: str = Field("user_activity_push", description="Feast push source of user activity.")
    user_feature_service: str = Field("gateway_user_v1", description="Feast FeatureService read per request.")
    impression_queue: int = Field(10_000, ge=1, description="Answers waiting to be written to the impression log.")
    impression_batch: int = Field(500, ge=1, description="Most impression rows written per transaction.")
    impression_backpressure_ms: float = Field(
        50.0,
        ge=0,
        description="How long Recommend waits for room in a full impression queue before dropping (counted)",
    )
