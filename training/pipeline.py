"""Trains every model the stack serves and publishes a bundle: `python -m training.pipeline`.

Reads the Feast offline sources written by `training.prepare`, trains BPR matrix factorisation (retrieval
embeddings) and the MLP ranker, and publishes a versioned bundle (services/common/bundle.py).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from services.common import bundle as bundle_format
from services.common.retrieval_data import RETRIEVAL_CONTRACT
from services.common.settings import CommonSettings
from services.ranking import features as rf
from services.ranking.serving import MODEL_NAME, OUTPUT, input_specs, triton_version
from training.data.offline import RECENT_POPULARITY_WEEKS
from training.export import export_onnx, publish_to_triton_repository
from training.models.mf import MfConfig, train_bpr
from training.models.ranker import RankerConfig, train_ranker
from training.prepare import OFFLINE_DIR

log = logging.getLogger("training.pipeline")


NEGATIVES_PER_POSITIVE = 4
HARD_NEGATIVE_POOL = 100  # negatives are also drawn from the retrieval model's top unseen items


def load_sources(offline_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter = pd.read_parquet(offline_dir / "interactions.parquet")
    users = pd.read_parquet(offline_dir / "users.parquet")
    items = pd.read_parquet(offline_dir / "items.parquet")
    return inter, users, items


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def train_and_publish(
    offline_dir: Path, bundle_dir: Path, mf_config: MfConfig, ranker_config: RankerConfig
) -> bundle_format.Bundle:
    started = time.perf_counter()
    inter, users, items = load_sources(offline_dir)
    item_ids = items["item_id"].tolist()
    user_ids = users["user_id"].tolist()
    item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
    user_pos = {user_id: i for i, user_id in enumerate(user_ids)}
    u_idx = inter["user_id"].map(user_pos).to_numpy()
    i_idx = inter["item_id"].map(item_pos).to_numpy()
    if np.isnan(u_idx.astype(float)).any() or np.isnan(i_idx.astype(float)).any():
        raise ValueError("interactions reference users or items missing from the profiles")
    u_idx, i_idx = u_idx.astype(np.int64), i_idx.astype(np.int64)
    n_users, n_items = len(user_ids), len(item_ids)

    log.info("training BPR-MF on %d interactions (%d users x %d items)", len(inter), n_users, n_items)
    mf = train_bpr(u_idx, i_idx, n_users, n_items, mf_config)
    user_vecs, item_vecs = mf.export()

    # Seen items per user (CSR), for exclusion at serving time.
    order = np.lexsort((i_idx, u_idx))
    seen_indices = i_idx[order].astype(np.int32)
    seen_indptr = np.concatenate([[0], np.cumsum(np.bincount(u_idx, minlength=n_users))]).astype(np.int64)
    popularity = np.bincount(i_idx, minlength=n_items)
    ts_max = inter["event_timestamp"].max()
    recent_mask = (inter["event_timestamp"] > ts_max - pd.Timedelta(weeks=RECENT_POPULARITY_WEEKS)).to_numpy()
    recent_popularity = np.bincount(i_idx[recent_mask], minlength=n_items)
    popular = np.lexsort((-recent_popularity, -popularity)).astype(np.int32)

    log.info("training the ranker")
    ratings = inter["rating"].to_numpy(dtype=np.float32)
    global_mean = float(ratings.mean())
    user_count = np.bincount(u_idx, minlength=n_users)
    user_mean = np.bincount(u_idx, weights=ratings, minlength=n_users) / np.maximum(user_count, 1)
    item_mean = np.bincount(i_idx, weights=ratings, minlength=n_items) / np.maximum(popularity, 1)
    item_dense_raw = rf.item_dense(popularity, item_mean, recent_popularity, items["year"].to_numpy(), global_mean)
    user_dense_raw = rf.user_dense(user_count, user_mean, global_mean)
    genre_vocab = sorted({g for gs in items["genres"] for g in gs})
    contract = rf.build_contract(
        user_ids,
        item_ids,
        users["occupation"].unique().tolist(),
        genre_vocab,
        np.concatenate([user_dense_raw[u_idx], item_dense_raw[i_idx]], axis=1),
        global_mean,
    )
    encoded_items = rf.encode_items(
        contract,
        item_ids,
        [list(g) for g in items["genres"]],
        popularity,
        item_mean,
        recent_popularity,
        items["year"].to_numpy(),
    )
    batch, labels = _ranker_examples(
        contract,
        users,
        inter,
        u_idx,
        i_idx,
        user_vecs,
        item_vecs,
        seen_indptr,
        seen_indices,
        popularity,
        encoded_items,
        user_dense_raw,
        seed=ranker_config.seed,
    )
    ranker = train_ranker(batch, labels, contract.cardinalities(), ranker_config)

    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staged = Path(tempfile.mkdtemp(dir=bundle_dir.parent if bundle_dir.parent.exists() else None, prefix=".staging-"))
    np.savez(
        staged / "retrieval.npz",
        item_ids=np.asarray(item_ids),
        item_vectors=item_vecs,
        user_ids=np.asarray(user_ids),
        user_vectors=user_vecs,
        seen_indptr=seen_indptr,
        seen_indices=seen_indices,
        popular_items=popular,
        popularity=popularity.astype(np.int64),
    )
    ranker.eval()
    export_onnx(ranker, contract, staged / "ranker.onnx")
    triton_model_version = triton_version(version)
    publish_to_triton_repository(
        bundle_dir / "triton", MODEL_NAME, triton_model_version, staged / "ranker.onnx", contract
    )
    manifest = bundle_format.Manifest(
        version=version,
        format_version=bundle_format.FORMAT_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
        dataset=f"{n_users} users, {n_items} items, {len(inter)} interactions",
        data_time_range=(str(inter["event_timestamp"].min()), str(ts_max)),
        components={
            "retrieval": {
                "file": "retrieval.npz",
                "contract": {**RETRIEVAL_CONTRACT, "dim": int(item_vecs.shape[1]), "model": "bpr_mf"},
                "config": asdict(mf_config),
            },
            "ranker": {
                "file": "ranker.onnx",
                "contract": {
                    "model": MODEL_NAME,
                    "features": contract.to_json(),
                    "inputs": [s.name for s in input_specs(contract)],
                    "output": OUTPUT,
                    "triton_model": MODEL_NAME,
                    "triton_version": triton_model_version,
                },
                "config": {**asdict(ranker_config), "negatives_per_positive": NEGATIVES_PER_POSITIVE},
            },
        },
        metrics={"training_seconds": round(time.perf_counter() - started, 1)},
    )
    published = bundle_format.publish(bundle_dir, staged, manifest)
    log.info("published bundle %s to %s in %.1fs", version, published.path, time.perf_counter() - started)
    return published


def _ranker_examples(
    contract: rf.RankerContract,
    users: pd.DataFrame,
    inter: pd.DataFrame,
    u_idx: np.ndarray,
    i_idx: np.ndarray,
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    seen_indptr: np.ndarray,
    seen_indices: np.ndarray,
    popularity: np.ndarray,
    encoded_items: rf.EncodedItems,
    user_dense_raw: np.ndarray,
    seed: int,
) -> tuple[rf.EncodedBatch, np.ndarray]:
    """Positives are the interactions; negatives are half popularity-sampled, half drawn from the retrieval
    model's top unseen items (what the ranker must tell apart in production), with the positive's context."""
    rng = np.random.default_rng(seed)
    n_items = item_vecs.shape[0]
    scores = user_vecs @ item_vecs.T
    for u in range(len(user_vecs)):
        scores[u, seen_indices[seen_indptr[u] : seen_indptr[u + 1]]] = -np.inf
    hard_pool = np.argpartition(-scores, HARD_NEGATIVE_POOL, axis=1)[:, :HARD_NEGATIVE_POOL]
    k = NEGATIVES_PER_POSITIVE
    neg_users = np.repeat(u_idx, k)
    pop_p = popularity / popularity.sum()
    half = k // 2
    popular_neg = rng.choice(n_items, size=(len(u_idx), half), p=pop_p)
    hard_neg = hard_pool[u_idx[:, None], rng.integers(0, HARD_NEGATIVE_POOL, (len(u_idx), k - half))]
    neg_items = np.concatenate([popular_neg, hard_neg], axis=1).reshape(-1)
    all_users = np.concatenate([u_idx, neg_users])
    all_items = np.concatenate([i_idx, neg_items])
    labels = np.concatenate([np.ones(len(u_idx)), np.zeros(len(neg_items))]).astype(np.float32)

    ts = inter["event_timestamp"]
    context = rf.encode_context(ts.dt.hour.to_numpy(), ts.dt.weekday.to_numpy())
    context = np.concatenate([context, np.repeat(context, k, axis=0)])
    user_sparse = np.stack(
        [
            contract.lookup("user_id", users["user_id"].to_numpy()),
            contract.lookup("age_bucket", users["age_bucket"].astype(str).to_numpy()),
            contract.lookup("gender", users["gender"].to_numpy()),
            contract.lookup("occupation", users["occupation"].to_numpy()),
        ],
        axis=1,
    )
    batch = rf.encode_batch(
        contract, user_sparse[all_users], user_dense_raw[all_users], context, encoded_items, all_items
    )
    return batch, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--offline-dir", type=Path, default=OFFLINE_DIR)
    parser.add_argument("--bundle-dir", type=Path, default=CommonSettings().bundle_dir)
    parser.add_argument("--mf-epochs", type=int, default=MfConfig.epochs)
    parser.add_argument("--ranker-epochs", type=int, default=RankerConfig.epochs)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    train_and_publish(
        args.offline_dir,
        args.bundle_dir,
        MfConfig(epochs=args.mf_epochs),
        RankerConfig(epochs=args.ranker_epochs),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
