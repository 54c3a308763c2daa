"""Writes a data set as the Parquet files the Feast repository's offline sources read.

Feature tables are snapshots with event timestamps so that point-in-time joins are correct: the user
activity table has one row per user and active day, the item statistics table one row per item and week.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artifacts.paths import DEFAULT_VAR
from training.data.schema import Dataset, age_bucket

#: Where `python -m training.prepare` writes the Parquet sources of the file offline store.
OFFLINE_DIR = DEFAULT_VAR / "data" / "feast"
RECENT_ITEMS = 20  # length of the user's recent-items list feature
RECENT_POPULARITY_WEEKS = 4

FILES = ("interactions", "users", "items", "user_activity", "item_stats", "batch_recommendations")


def write_offline_sources(dataset: Dataset, out_dir: Path) -> dict[str, Path]:
    """Writes the five source tables; returns their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    inter = dataset.interactions.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    start = inter["timestamp"].min()
    tables = {
        "interactions": inter.rename(columns={"timestamp": "event_timestamp"}).reset_index(drop=True),
        "users": user_profiles(dataset, start),
        "items": item_profiles(dataset, start),
        "user_activity": user_activity_snapshots(inter),
        "item_stats": item_stat_snapshots(inter),
        # Written to the online store by training/batch_recommend.py; the source only gives the view a schema.
        "batch_recommendations": pd.DataFrame(
            {
                "user_id": pd.Series([], dtype=str),
                "batch_item_ids": pd.Series([], dtype=object),
                "bundle_version": pd.Series([], dtype=str),
                "segment": pd.Series([], dtype="int64"),
                "event_timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
            }
        ),
    }
    paths = {}
    for name, frame in tables.items():
        path = out_dir / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths[name] = path
    return paths


def user_profiles(dataset: Dataset, valid_from: pd.Timestamp) -> pd.DataFrame:
    users = dataset.users
    return pd.DataFrame(
        {
            "user_id": users["user_id"],
            "age_bucket": users["age"].map(age_bucket).astype("int64"),
            "gender": users["gender"],
            "occupation": users["occupation"],
            "zip_prefix": users["zip_code"].str[:3],
            "event_timestamp": valid_from,
        }
    )


def item_profiles(dataset: Dataset, valid_from: pd.Timestamp) -> pd.DataFrame:
    items = dataset.items
    return pd.DataFrame(
        {
            "item_id": items["item_id"],
            "title": items["title"],
            "year": items["year"].astype("int64"),
            "genres": items["genres"],
            "event_timestamp": valid_from,
        }
    )


def user_activity_snapshots(inter: pd.DataFrame) -> pd.DataFrame:
    """One row per user and day with activity: counts, mean rating and recent items as of that day's end."""
    df = inter.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    grouped = df.groupby("user_id", sort=False)
    count = grouped.cumcount().to_numpy() + 1
    mean_rating = (grouped["rating"].cumsum().to_numpy() / count).astype("float32")
    day = df["timestamp"].dt.floor("D")
    last_of_day = ~(df[["user_id"]].assign(day=day).duplicated(keep="last")).to_numpy()
    rows = np.flatnonzero(last_of_day)
    user_start = grouped.cumcount().to_numpy()  # position within the user's history
    items = df["item_id"].to_numpy()
    recent = [items[max(r - user_start[r], r - RECENT_ITEMS + 1) : r + 1][::-1].tolist() for r in rows]
    return pd.DataFrame(
        {
            "user_id": df["user_id"].to_numpy()[rows],
            "interaction_count": count[rows].astype("int64"),
            "mean_rating": mean_rating[rows],
            "recent_item_ids": recent,
            "last_active": df["timestamp"].iloc[rows].to_numpy(),
            # The snapshot is valid from the end of that day.
            "event_timestamp": (day.iloc[rows] + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)).to_numpy(),
        }
    ).assign(last_active=lambda f: pd.to_datetime(f["last_active"], utc=True))


def item_stat_snapshots(inter: pd.DataFrame) -> pd.DataFrame:
    """One row per item and week: cumulative popularity and mean rating, and the last weeks' popularity."""
    start = inter["timestamp"].min().floor("D")
    week = ((inter["timestamp"] - start) // pd.Timedelta(weeks=1)).astype("int64")
    frame = inter.assign(week=week)
    counts = frame.pivot_table(index="item_id", columns="week", values="rating", aggfunc="size", fill_value=0)
    sums = frame.pivot_table(index="item_id", columns="week", values="rating", aggfunc="sum", fill_value=0)
    weeks = np.arange(int(week.max()) + 1)
    counts = counts.reindex(columns=weeks, fill_value=0)
    sums = sums.reindex(columns=weeks, fill_value=0)
    cum_count = counts.cumsum(axis=1)
    cum_sum = sums.cumsum(axis=1)
    recent = counts.T.rolling(RECENT_POPULARITY_WEEKS, min_periods=1).sum().T
    stacked = pd.DataFrame(
        {
            "popularity": cum_count.stack(),
            "rating_sum": cum_sum.stack(),
            "recent_popularity": recent.stack(),
        }
    ).reset_index()
    stacked.columns = ["item_id", "week", "popularity", "rating_sum", "recent_popularity"]
    stacked = stacked[stacked["popularity"] > 0]
    return pd.DataFrame(
        {
            "item_id": stacked["item_id"].to_numpy(),
            "popularity": stacked["popularity"].astype("int64").to_numpy(),
            "mean_rating": (stacked["rating_sum"] / stacked["popularity"]).astype("float32").to_numpy(),
            "recent_popularity": stacked["recent_popularity"].astype("int64").to_numpy(),
            "event_timestamp": start
            + pd.to_timedelta(stacked["week"].to_numpy() + 1, unit="W")
            - pd.Timedelta(seconds=1),
        }
    )


#: Column types of the source tables in a PostgreSQL offline store (Feast maps text[] to a string list).
POSTGRES_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "interactions": [("user_id", "text"), ("item_id", "text"), ("rating", "real"), ("event_timestamp", "timestamptz")],
    "users": [
        ("user_id", "text"), ("age_bucket", "bigint"), ("gender", "text"), ("occupation", "text"),
        ("zip_prefix", "text"), ("event_timestamp", "timestamptz"),
    ],
    "items": [
        ("item_id", "text"), ("title", "text"), ("year", "bigint"), ("genres", "text[]"),
        ("event_timestamp", "timestamptz"),
    ],
    "user_activity": [
        ("user_id", "text"), ("interaction_count", "bigint"), ("mean_rating", "real"), ("recent_item_ids", "text[]"),
        ("last_active", "timestamptz"), ("event_timestamp", "timestamptz"),
    ],
    "item_stats": [
        ("item_id", "text"), ("popularity", "bigint"), ("mean_rating", "real"), ("recent_popularity", "bigint"),
        ("event_timestamp", "timestamptz"),
    ],
    "batch_recommendations": [
        ("user_id", "text"), ("batch_item_ids", "text[]"), ("bundle_version", "text"), ("segment", "bigint"),
        ("event_timestamp", "timestamptz"),
    ],
}  # fmt: skip
TABLE_PREFIX = "source_"  # as in features/definitions.py; unlike Feast's online tables (<project>_<view>)


def load_into_postgres(paths: dict[str, Path], dsn: str, schema: str) -> dict[str, int]:
    """Replaces the source tables in `schema` with the Parquet sources, in one transaction (COPY).

    Returns rows per table. Readers see the old tables or the new ones, never a half-loaded one.
    """
    import psycopg
    from psycopg import sql

    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for name, columns in POSTGRES_COLUMNS.items():
            table = sql.Identifier(schema, TABLE_PREFIX + name)
            frame = pd.read_parquet(paths[name], columns=[c for c, _ in columns])
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            cur.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    table, sql.SQL(", ").join(sql.SQL("{} " + t).format(sql.Identifier(c)) for c, t in columns)
                )
            )
            values = [
                frame[c].map(list).tolist() if t == "text[]" else frame[c].tolist()  # numpy arrays -> lists
                for c, t in columns
            ]
            names = sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
                for row in zip(*values, strict=True):
                    copy.write_row(row)
            key = columns[0][0]
            cur.execute(sql.SQL("CREATE INDEX ON {} ({}, event_timestamp)").format(table, sql.Identifier(key)))
            counts[name] = len(frame)
    return counts
