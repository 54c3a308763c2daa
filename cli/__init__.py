"""The `recsys` command."""
