"""Offline evaluation: one protocol for the served pipeline and every model in training/models.

`python -m training.evaluation` (or `recsys eval`) splits the data, fits each model on the train part, ranks
all items for every test user and writes a report (JSON, Markdown, plots). See docs/evaluation.md.
"""
