"""Data sets the system trains on: MovieLens-100K and a synthetic generator with the same schema."""

from training.data.schema import Catalogue, Dataset

__all__ = ["Catalogue", "Dataset"]
