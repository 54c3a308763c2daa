"""Batch recommendations as a Ray job: `python -m training.batch_recommend` (or `ray job submit ... -- python -m
training.batch_recommend --address auto`).

Precomputes every known user's top-K candidates from the current bundle's retrieval embeddings (the user's
seen items excluded) with Ray Data, and pushes them with the user's k-means segment (the bundle's `segments`;
-1 without) to the Feast online store (`user_batch_recommendations`).
The gateway reads the list with the user's other features and serves it when the candidate stage is down
(services/gateway/pipeline.py), so a user keeps getting personal answers through an outage. The ranking and
rerank stages still order the list when they are up. Rerun after each bundle publication.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artifacts import bundle as bundle_format
from artifacts.bundle import RETRIEVAL_COMPONENT, SEGMENTS_COMPONENT
from services.common.settings import CommonSettings
from training.data.training_data import FEATURE_REPO
from training.progress import progress

log = logging.getLogger("training.batch_recommend")

PUSH_SOURCE = "batch_recommendations_push"
DEFAULT_K = 200


@functools.lru_cache(maxsize=2)
def _retrieval(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in ("user_ids", "user_vectors", "item_ids", "item_vectors", "seen_indptr",
                                     "seen_indices")}  # fmt: skip


def top_k_block(batch: dict[str, np.ndarray], retrieval_path: str, k: int, segments: np.ndarray) -> dict[str, Any]:
    """One block of user rows -> their top-k unseen items by retrieval score and their segment (a Ray Data batch
    UDF; `segments` is aligned with the retrieval users)."""
    r = _retrieval(retrieval_path)
    rows = batch["id"].astype(np.int64)
    scores = r["user_vectors"][rows] @ r["item_vectors"].T
    starts, lengths = r["seen_indptr"][rows], np.diff(r["seen_indptr"])[rows]
    block_rows = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    scores[block_rows, r["seen_indices"][np.repeat(starts, lengths) + offsets]] = -np.inf  # seen items never come back
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    keep = np.isfinite(np.take_along_axis(scores, top, axis=1))
    items = r["item_ids"]
    return {
        "user_id": r["user_ids"][rows].astype(str),
        "batch_item_ids": np.array([items[t[m]].astype(str).tolist() for t, m in zip(top, keep, strict=True)],
                                   dtype=object),
        "segment": segments[rows].astype(np.int64),
    }  # fmt: skip


def user_segments(bundle: bundle_format.Bundle, user_ids: np.ndarray) -> np.ndarray:
    """Each retrieval user's segment in the bundle's `segments` component; -1 where it has none."""
    out = np.full(len(user_ids), -1, dtype=np.int64)
    if SEGMENTS_COMPONENT not in bundle.manifest.components:
        return out
    arrays = bundle.load_arrays(SEGMENTS_COMPONENT, keys=("user_ids", "user_segment"))
    pos = pd.Index(arrays["user_ids"].astype(str)).get_indexer(user_ids.astype(str))
    out[pos >= 0] = np.asarray(arrays["user_segment"], dtype=np.int64)[pos[pos >= 0]]
    return out


def run(bundle: bundle_format.Bundle, repo_path: Path, k: int, address: str | None, push_batch: int = 5000) -> int:
    """Computes and pushes the lists; returns how many users got one."""
    import ray
    from feast import FeatureStore
    from feast.data_source import PushMode

    retrieval_path = str(bundle.path / bundle.manifest.components[RETRIEVAL_COMPONENT]["file"])
    user_ids = _retrieval(retrieval_path)["user_ids"]
    n_users = len(user_ids)
    segments = user_segments(bundle, user_ids)
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else min(os.cpu_count() or 1, 2), log_to_driver=False)
    dataset = ray.data.range(n_users).map_batches(
        functools.partial(top_k_block, retrieval_path=retrieval_path, k=k, segments=segments), batch_size=256
    )
    store = FeatureStore(repo_path=str(repo_path))
    now = pd.Timestamp(datetime.now(UTC))
    pushed = 0
    with progress(total=n_users, desc="batch recommendations", unit="user") as bar:
        for block in dataset.iter_batches(batch_size=push_batch, batch_format="pandas"):
            rows = pd.DataFrame(block).assign(bundle_version=bundle.manifest.version, event_timestamp=now)
            store.push(PUSH_SOURCE, rows, to=PushMode.ONLINE)
            pushed += len(rows)
            bar.update(len(rows))
    return pushed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle-dir", type=Path, default=CommonSettings().bundle_dir)
    parser.add_argument("--feature-repo", type=Path, default=FEATURE_REPO)
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="candidates per user")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster (default: local)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.perf_counter()
    bundle = bundle_format.load_current(args.bundle_dir)
    # Through the importable module, not __main__, so that Ray workers can unpickle the batch function.
    module = importlib.import_module("training.batch_recommend")
    pushed = module.run(bundle, args.feature_repo, args.k, args.address)
    log.info("pushed %d users' top-%d lists (bundle %s) in %.1fs", pushed, args.k, bundle.manifest.version,
             time.perf_counter() - started)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
