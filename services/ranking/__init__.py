"""Ranking stage: scores candidates for a user with a learned model."""
