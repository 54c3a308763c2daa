"""Training as a Ray workload: `python -m training.ray_jobs --model bpr_mf [--epochs N] [--workers N]
[--config.FIELD VALUE ...]`, and `python -m training.ray_jobs bench ...` (training/ray/, docs/training.md).

Submitted to a cluster with

    ray job submit --working-dir . -- python -m training.ray_jobs --model bpr_mf --feature-repo "$PWD/features" \\
        --out "$PWD/var/artifacts/bpr_mf" --storage-path "$PWD/var/ray_results"

`.gitignore` (which Ray honours) keeps .venv/ and var/ out of the uploaded working dir;
training.ray.job.RUNTIME_ENV_EXCLUDES says the same for `ray://` connections.
"""

from __future__ import annotations

from training.ray.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
