"""The tabular schema every data source produces (MovieLens, synthetic, the event log).

Ids are strings at the edges (the API and the feature store); models use dense indices built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from artifacts.tower_inputs import AGE_BUCKETS

# MovieLens-100K's 19 genres, in the order of its u.item flag columns.
MOVIELENS_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code")
ITEM_COLUMNS = ("item_id", "title", "year", "genres")


def age_bucket(age: int) -> int:
    """The lower bound of the age band `age` falls in; 0 for unknown (age <= 0)."""
    bucket = 0
    for lower in AGE_BUCKETS[1:]:
        if age >= lower:
            bucket = lower
    return bucket


@dataclass(frozen=True)
class Catalogue:
    """Items with their descriptive data. `items` columns: item_id (str), title, year (int, 0 = unknown),
    genres (list[str])."""

    items: pd.DataFrame


@dataclass(frozen=True)
class Dataset:
    """Interactions, users and items.

    interactions: user_id (str), item_id (str), rating (float32), timestamp (datetime64[ns, UTC]).
    users: user_id (str), age (int), gender (str), occupation (str), zip_code (str).
    items: item_id (str), title (str), year (int), genres (list[str]).
    """

    name: str
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue(self.items)
