"""Feature definitions: entities, sources, feature views and the feature service each model reads.

Managed with the Feast CLI from this folder: `feast apply`, then `feast materialize-incremental <end>`.
`python -m training.prepare` writes the sources (training/data/offline.py): Parquet files for the embedded
`file` offline store, and with `--postgres DSN` the same tables in PostgreSQL for the `postgres` one. The
source type follows the offline store of the feature_store.yaml next to this file, so the definitions stay
one set whichever environment's yaml is in place.
"""

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

# What the gateway reads per request and hands to the stages.
gateway_user_v1 = FeatureService(
    name="gateway_user_v1",
    features=[user_profile, user_activity],
    description="User features read once per Recommend call.",
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
