"""Feature definitions: entities, sources, feature views and the feature service each model reads.

Managed with the Feast CLI from this folder: `feast apply`, then `feast materialize-incremental <end>`.
`python -m training.prepare` writes the sources (training/data/offline.py): Parquet files for the embedded
`file` offline store, and with `--postgres DSN` the same tables in PostgreSQL for the `postgres` one. The
source type follows the offline store of the feature_store.yaml next to this file, so the definitions stay
one set whichever environment's yaml is in place.
"""

import os
from datetime import timedelta
from pathlib import Path

import yaml
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Array, Float32, Int64, String, UnixTimestamp

# The offline data reaches back to 1997: a TTL this long lets `materialize-incremental` and point-in-time
# joins reach it. Fresher data supersedes older rows by event timestamp, so nothing stale is served.
HISTORY_TTL = timedelta(days=365 * 40)
SOURCE_DIR = "../var/data/feast"
#: PostgreSQL tables are named with this prefix in the offline store's schema (`db_schema`).
TABLE_PREFIX = "source_"


def _offline_store_type() -> str:
    config = yaml.safe_load((Path(__file__).with_name("feature_store.yaml")).read_text()) or {}
    offline = config.get("offline_store") or {}
    return str(offline.get("type", "file") if isinstance(offline, dict) else offline)


OFFLINE_STORE = _offline_store_type()

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A person who receives recommendations.",
)
item = Entity(
    name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalogue item (a movie)."
)


#: The event log's PostgreSQL schema (the gateway's RECSYS_GATEWAY_EVENT_LOG_SCHEMA), read by the feedback source.
EVENT_LOG_SCHEMA = os.environ.get("RECSYS_GATEWAY_EVENT_LOG_SCHEMA", "recsys")


def _source(name: str, description: str) -> DataSource:
    if OFFLINE_STORE == "postgres":
        return PostgreSQLSource(
            name=f"{name}_source",
            table=f"{TABLE_PREFIX}{name}",
            timestamp_field="event_timestamp",
            description=description,
        )
    return FileSource(
        name=f"{name}_source",
        path=f"{SOURCE_DIR}/{name}.parquet",
        timestamp_field="event_timestamp",
        description=description,
    )


# Training reads interactions through the offline store (training/data/training_data.py): the historical
# interactions and the live feedback events. On PostgreSQL the feedback source is the gateway's event log
# table itself, so a retrain sees every acknowledged event; with the file store, `python -m
# training.data.event_export` snapshots the embedded log into the Parquet file first.
interactions_source = _source("interactions", "Historical interactions (user, item, rating, time).")
if OFFLINE_STORE == "postgres":
    feedback_events_source: DataSource = PostgreSQLSource(
        name="feedback_events_source",
        query=(
            "SELECT user_id, item_id, event_type, value, ts AS event_timestamp "
            f"FROM {EVENT_LOG_SCHEMA}.events"  # a schema name from settings, not user input
        ),
        timestamp_field="event_timestamp",
        description="Feedback events recorded by the gateway (the event log).",
    )
else:
    feedback_events_source = FileSource(
        name="feedback_events_source",
        path=f"{SOURCE_DIR}/feedback_events.parquet",
        timestamp_field="event_timestamp",
        description="Feedback events recorded by the gateway, exported from the embedded event log.",
    )

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=HISTORY_TTL,
    schema=[
        Field(name="age_bucket", dtype=Int64, description="Lower bound of the age band."),
        Field(name="gender", dtype=String),
        Field(name="occupation", dtype=String),
        Field(name="zip_prefix", dtype=String, description="First three digits of the postcode."),
    ],
    source=_source("users", "User demographics."),
    description="Demographics given at sign-up.",
    tags={"owner": "recsys", "stage": "ranking"},
)

# The gateway pushes each user's updated activity row here as feedback arrives (the real-time path); the
# daily snapshots in the batch source are what `materialize` and point-in-time joins read.
user_activity_push = PushSource(
    name="user_activity_push",
    batch_source=_source("user_activity", "Daily snapshots of each user's activity."),
    description="Fresh user activity rows computed by the gateway from accepted feedback events.",
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=HISTORY_TTL,
    schema=[
        Field(name="interaction_count", dtype=Int64),
        Field(name="mean_rating", dtype=Float32),
        Field(name="recent_item_ids", dtype=Array(String), description="Most recent items, newest first."),
        Field(name="last_active", dtype=UnixTimestamp),
    ],
    source=user_activity_push,
    description="What the user did recently; drives seen-item exclusion and the query tower's history.",
    tags={"owner": "recsys", "stage": "candidate,ranking"},
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=HISTORY_TTL,
    schema=[
        Field(name="title", dtype=String),
        Field(name="year", dtype=Int64, description="Release year; 0 when unknown."),
        Field(name="genres", dtype=Array(String)),
    ],
    source=_source("items", "Catalogue metadata."),
    description="Descriptive item data.",
    tags={"owner": "recsys", "stage": "ranking,rerank"},
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=HISTORY_TTL,
    schema=[
        Field(name="popularity", dtype=Int64, description="Interactions so far."),
        Field(name="mean_rating", dtype=Float32),
        Field(name="recent_popularity", dtype=Int64, description="Interactions in the last four weeks."),
    ],
    source=_source("item_stats", "Weekly snapshots of item statistics."),
    description="How popular and well rated each item is.",
    tags={"owner": "recsys", "stage": "ranking"},
)

# Written by the batch-recommendations job (training/batch_recommend.py) straight to the online store; the
# gateway reads it with the user's other features and serves it when the candidate stage is down.
batch_recommendations_push = PushSource(
    name="batch_recommendations_push",
    batch_source=_source("batch_recommendations", "Precomputed candidate lists (empty until the job runs)."),
    description="Top-K lists per user computed offline from the current bundle.",
)

user_batch_recommendations = FeatureView(
    name="user_batch_recommendations",
    entities=[user],
    ttl=HISTORY_TTL,
    schema=[
        Field(name="batch_item_ids", dtype=Array(String), description="Precomputed candidates, best first."),
        Field(name="bundle_version", dtype=String, description="The bundle the list was computed with."),
        Field(
            name="segment",
            dtype=Int64,
            description="The user's k-means segment in that bundle (-1 when it has none); drives the cold-start "
            "fallback, popular in the segment.",
        ),
    ],
    source=batch_recommendations_push,
    description="The fallback candidate list and the segment of each known user.",
    tags={"owner": "recsys", "stage": "gateway"},
)

# What the gateway reads per request and hands to the stages.
gateway_user_v1 = FeatureService(
    name="gateway_user_v1",
    features=[user_profile, user_activity, user_batch_recommendations[["batch_item_ids", "bundle_version", "segment"]]],
    description="User features read once per Recommend call (with the user's fallback list and segment).",
)

# What the retrieval model (candidate stage) consumes: the freshest history, for exclusion and the query.
retrieval_v1 = FeatureService(
    name="retrieval_v1",
    features=[user_activity[["recent_item_ids", "interaction_count"]]],
    description="Inputs of the retrieval model's query side.",
)

# What the ranking model consumes (user features arrive in the request, item features are held in memory).
ranking_v1 = FeatureService(
    name="ranking_v1",
    features=[user_profile, user_activity, item_profile, item_stats],
    description="Inputs of the ranking model.",
)

ranking_items_v1 = FeatureService(
    name="ranking_items_v1",
    features=[item_profile, item_stats],
    description="Item features the ranking service loads into memory at start-up.",
)
