"""Benchmarks run against a live stack: `recsys bench <target>`. Results are JSON on stdout."""
