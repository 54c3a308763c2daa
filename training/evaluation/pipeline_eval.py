"""The served pipeline under the evaluation protocol: trained on the train part, run through the services'
own cores (no gRPC, no re-implementation).

1. The train part is written as Feast offline sources (training.data.offline) into a temporary folder, with
   the complete user and item tables, and `training.pipeline.train_and_publish` publishes a bundle from it.
2. The stage cores are built from that bundle as the services build them: the candidate service's
   `Retriever`, the ranking service's `Encoder` with the in-process onnxruntime backend, the rerank
   service's `Reranker`. What the services read from the Feast online store (item catalogue and statistics,
   user profile and activity) is the latest row per entity of the offline tables written in step 1, i.e.
   computed from the train part only.
3. Each test user is sent through the stages as the gateway does: retrieve `candidate_count` candidates
   (train items excluded by the bundle, validation items as `exclude_item_ids`, recent items from the user's
   activity), rank them, pass the top `ranked_count` to rerank with diversity 0 and with the gateway's
   default diversity. The request time is the user's first test interaction.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artifacts.bundle import Bundle
from recsys.common.v1 import common_pb2
from services.candidate.query import RetrievalQuery
from services.candidate.retrieval import Retriever
from services.gateway.settings import GatewaySettings
from services.ranking.backends import InProcessBackend
from services.ranking.scorer import Encoder, RankerArtifacts, UserRow
from services.rerank.query import DiversityMethod, RerankQuery
from services.rerank.reranker import Reranker
from services.rerank.settings import RerankSettings
from training.data.interactions import Interactions
from training.data.offline import write_offline_sources
from training.data.schema import Dataset
from training.evaluation import metrics as m
from training.evaluation.context import QUICK_EPOCHS, EvalContext, csr, gather_rows

log = logging.getLogger(__name__)

CANDIDATE_COUNT = int(GatewaySettings.model_fields["candidate_count"].default)
RANKED_COUNT = int(GatewaySettings.model_fields["ranked_count"].default)
DEFAULT_DIVERSITY = float(GatewaySettings.model_fields["default_diversity"].default)
RERANK_METHOD = DiversityMethod(RerankSettings.model_fields["diversity_method"].default)
GRAPH_WEIGHT = float(RerankSettings.model_fields["graph_weight"].default)
AFFINITY_WEIGHT = float(RerankSettings.model_fields["affinity_weight"].default)
SWEEP_METRICS = (
    "ndcg@10",
    "recall@10",
    "ild@10",
    "coverage@10",
    "novelty@10",
    "avg_popularity@10",
    "miscalibration@10",
)
#: The rerank stage's trade-off, measured on the same ranked candidates: every method at each strength.
DIVERSITY_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
#: The graph-affinity weight's effect, at diversity 0 (so only the blend changes the order).
GRAPH_SWEEP = (0.0, 0.1, 0.3, 0.5)
#: The item-to-item (EASE) affinity weight's effect, at diversity 0 and the default graph weight.
AFFINITY_SWEEP = (0.0, 0.3, 0.5, 0.7, 0.9)
RETRIEVAL_KS = (10, 20, 100, 500)


def dataset_of(part: Interactions, name: str = "train part") -> Dataset:
    """A training.data Dataset holding `part`'s interactions and the complete user and item tables."""
    inter = pd.DataFrame(
        {
            "user_id": part.user_ids[part.user_idx].astype(str),
            "item_id": part.item_ids[part.item_idx].astype(str),
            "rating": part.ratings.astype(np.float32),
            "timestamp": pd.to_datetime(part.timestamps, unit="s", utc=True),
        }
    )
    u = part.users
    # The offline user table holds the age bucket and zip prefix; bucketing them again is the identity.
    users = pd.DataFrame(
        {
            "user_id": u["user_id"].astype(str),
            "age": u["age_bucket"] if "age_bucket" in u else u["age"],
            "gender": u["gender"],
            "occupation": u["occupation"],
            "zip_code": u["zip_prefix"] if "zip_prefix" in u else u.get("zip_code", ""),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": part.items["item_id"].astype(str),
            "title": part.items["title"],
            "year": part.items["year"].astype("int64"),
            "genres": [list(g) for g in part.items["genres"]],
        }
    )
    return Dataset(name=name, interactions=inter, users=users, items=items)


def train_bundle(train: Interactions, workdir: Path, seed: int, quick: bool) -> tuple[Bundle, Path]:
    """Publishes a bundle trained on the train part (the same code as `make train`), and writes the train part
    as offline sources (the item and user features the stages read); returns both."""
    from training.pipeline import train_and_publish
    from training.pipeline_config import PipelineConfig

    offline = workdir / "offline"
    write_offline_sources(dataset_of(train), offline)
    config = PipelineConfig().with_seed(seed)
    if quick:
        config = config.with_epochs(QUICK_EPOCHS)
    log.info("training the pipeline on %d interactions (ranker %s, quick=%s)", len(train), config.ranker, quick)
    bundle = train_and_publish(train, workdir / "bundles", config)
    return bundle, offline


def _latest(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The newest row per entity: what materialising the offline table leaves in the online store."""
    return frame.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last").set_index(key)


@dataclass(frozen=True)
class OnlineFeatures:
    """The feature rows the services would read online, from the offline tables of the train part."""

    items: pd.DataFrame  # item_id -> title, year, genres, popularity, mean_rating, recent_popularity
    users: pd.DataFrame  # user_id -> age_bucket, gender, occupation, interaction_count, mean_rating, recent_item_ids

    @classmethod
    def read(cls, offline: Path) -> OnlineFeatures:
        profiles = _latest(pd.read_parquet(offline / "items.parquet"), "item_id")
        stats = _latest(pd.read_parquet(offline / "item_stats.parquet"), "item_id")
        items = profiles[["title", "year", "genres"]].join(stats[["popularity", "mean_rating", "recent_popularity"]])
        users = _latest(pd.read_parquet(offline / "users.parquet"), "user_id")[["age_bucket", "gender", "occupation"]]
        activity = _latest(pd.read_parquet(offline / "user_activity.parquet"), "user_id")
        users = users.join(activity[["interaction_count", "mean_rating", "recent_item_ids"]])
        return cls(items=items, users=users)

    def item_columns(self, item_ids: list[str]) -> dict[str, list[Any]]:
        """Feature lists aligned with `item_ids`, None where missing (as Feast's online read returns them)."""
        rows = self.items.reindex(item_ids)
        return {c: [_online_value(v) for v in rows[c].tolist()] for c in rows.columns}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _online_value(v: Any) -> Any:
    """A Parquet cell as Feast's online read returns it: lists as lists, missing as None."""
    if isinstance(v, np.ndarray):
        return [x.item() if isinstance(x, np.generic) else x for x in v.tolist()]
    return None if _missing(v) else v


@dataclass
class StageCores:
    version: str
    retriever: Retriever
    encoder: Encoder
    backend: InProcessBackend
    reranker: Reranker


def build_cores(bundle: Bundle, online: OnlineFeatures) -> StageCores:
    """The three stage cores exactly as the services load them from a bundle, with the Feast online read of
    item features replaced by `online` (the train part's rows); the rerank stage without business rules."""

    def read_features(_repo: Path, item_ids: Sequence[str]) -> dict[str, list[Any]]:
        return online.item_columns(list(item_ids))

    artifacts = RankerArtifacts.from_bundle(bundle)
    return StageCores(
        bundle.version,
        Retriever.from_bundle(bundle, Path(), read_features=read_features),
        Encoder.load(artifacts.contract, Path(), read_features),
        InProcessBackend(artifacts.onnx_path, artifacts.contract),
        Reranker.from_bundle(bundle, Path(), read_features=read_features),
    )


def _user_features(user: UserRow) -> common_pb2.UserFeatures:
    return common_pb2.UserFeatures(
        user_id=user.user_id,
        age_bucket=user.age_bucket,
        gender=user.gender,
        occupation=user.occupation,
        interaction_count=user.interaction_count,
        mean_rating=user.mean_rating,
    )


def _user_row(user_id: str, users: pd.DataFrame) -> tuple[UserRow, list[str]]:
    """The ranking request's user features and the recent items, as the gateway reads them online."""
    if user_id not in users.index:
        return UserRow(user_id=user_id), []
    r = users.loc[user_id]
    recent = r["recent_item_ids"]
    return (
        UserRow(
            user_id=user_id,
            age_bucket=int(r["age_bucket"]) if not _missing(r["age_bucket"]) else 0,
            gender=str(r["gender"] or ""),
            occupation=str(r["occupation"] or ""),
            interaction_count=int(r["interaction_count"]) if not _missing(r["interaction_count"]) else 0,
            mean_rating=float(r["mean_rating"]) if not _missing(r["mean_rating"]) else 0.0,
        ),
        [str(i) for i in _online_value(recent) or []],
    )


def _conditional_ndcg(rel: np.ndarray, k: int) -> tuple[float, int]:
    """Mean NDCG@k of candidate lists whose ideal ranking puts all relevant *candidates* first (users with at
    least one relevant candidate), and how many users that is."""
    n_rel = rel.sum(axis=1)
    keep = n_rel > 0
    if not keep.any():
        return float("nan"), 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = rel[keep, :k].astype(np.float64) @ disc[: min(k, rel.shape[1])]
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel[keep], k)]
    return float((dcg / idcg).mean()), int(keep.sum())


def evaluate_pipeline(ctx: EvalContext) -> dict[str, Any]:
    split = ctx.split
    train = split.train
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-eval-") as tmp:
        bundle, offline = train_bundle(train, Path(tmp), ctx.config.seed, ctx.config.quick)
        trained = time.perf_counter()
        online = OnlineFeatures.read(offline)
        cores = build_cores(bundle, online)
        built = time.perf_counter()
        lists = run_stages(cores, ctx, online)
        ran = time.perf_counter()
        manifest = bundle.manifest
        # The model behind each component (the ranker's contract names its serving interface and architecture).
        components = {
            name: c.get("contract", {}).get("architecture") or c.get("contract", {}).get("model", "")
            for name, c in manifest.components.items()
        }

    retrieval, ranked = lists["retrieval"], lists["ranked"]
    stages: dict[str, Any] = {"retrieval": {"users": len(ctx.users)}}
    for k in RETRIEVAL_KS:
        per_user = m.accuracy_per_user(retrieval, ctx.truth, k)
        stages["retrieval"][f"recall@{k}"] = float(per_user["recall"].mean())
        if k <= ctx.config.max_k:
            stages["retrieval"][f"ndcg@{k}"] = float(per_user["ndcg"].mean())
    rel_ranked = m.relevance(ranked, ctx.truth)
    rel_retrieved = m.relevance(retrieval, ctx.truth)
    stages["ranking"] = {}
    for k in ctx.config.ks:
        ndcg, users = _conditional_ndcg(rel_ranked, k)
        stages["ranking"][f"ndcg@{k}"] = ndcg
        stages["ranking"][f"retrieval_order_ndcg@{k}"] = _conditional_ndcg(rel_retrieved, k)[0]
        stages["ranking"]["users"] = users
    stages["rerank_diversity_0"] = ctx.score_metrics(lists["diversity_0"])
    sweep = []
    for method in DiversityMethod:
        for d in DIVERSITY_SWEEP:
            scored = ctx.score_metrics(lists[_sweep_key(method, d)])
            sweep.append({"method": method.value, "diversity": d} | {key: scored.get(key) for key in SWEEP_METRICS})
    entry: dict[str, Any] = {
        "implementation": "training.pipeline.train_and_publish + services' Retriever, Encoder/onnxruntime, Reranker",
        **ctx.score_metrics(lists["diversity_default"]),
        "stages": stages,
        "diversity_sweep": sweep,
        "graph_weight_sweep": [
            {"graph_weight": w} | {key: ctx.score_metrics(lists[f"graph_{w:.2f}"]).get(key) for key in SWEEP_METRICS}
            for w in GRAPH_SWEEP
        ],
        "affinity_weight_sweep": [
            {"affinity_weight": w}
            | {key: ctx.score_metrics(lists[f"affinity_{w:.2f}"]).get(key) for key in SWEEP_METRICS}
            for w in AFFINITY_SWEEP
        ],
        "settings": {
            "candidate_count": CANDIDATE_COUNT,
            "ranked_count": RANKED_COUNT,
            "diversity": DEFAULT_DIVERSITY,
            "diversity_method": str(RERANK_METHOD),
            "graph_weight": GRAPH_WEIGHT,
            "affinity_weight": AFFINITY_WEIGHT,
            "bundle_components": components,
        },
        "timings": {
            "train_s": round(trained - started, 2),
            "build_s": round(built - trained, 2),
            "recommend_s": round(ran - built, 2),
            "ms_per_user": round(1000 * (ran - built) / max(len(ctx.users), 1), 2),
            "total_s": round(time.perf_counter() - started, 2),
        },
    }
    return entry


def run_stages(cores: StageCores, ctx: EvalContext, online: OnlineFeatures) -> dict[str, np.ndarray]:
    """Per evaluated user: retrieval candidates, their ranked order and the reranked top lists (item rows of the
    split's vocabulary, -1 padded)."""
    split = ctx.split
    data_items = pd.Index(split.train.item_ids.astype(str))
    bundle_items = cores.retriever.fallback.item_ids.astype(str)
    to_data = data_items.get_indexer(bundle_items)
    if (to_data < 0).any():
        raise ValueError("the bundle holds items unknown to the evaluation data")
    user_ids = split.train.user_ids.astype(str)
    item_ids = split.train.item_ids.astype(str)
    n, k = len(ctx.users), ctx.config.max_k
    out = {
        "retrieval": np.full((n, CANDIDATE_COUNT), -1, dtype=np.int64),
        "ranked": np.full((n, CANDIDATE_COUNT), -1, dtype=np.int64),
        "diversity_0": np.full((n, k), -1, dtype=np.int64),
        "diversity_default": np.full((n, k), -1, dtype=np.int64),
        **{
            _sweep_key(method, d): np.full((n, k), -1, dtype=np.int64)
            for method in DiversityMethod
            for d in DIVERSITY_SWEEP
        },
        **{f"graph_{w:.2f}": np.full((n, k), -1, dtype=np.int64) for w in GRAPH_SWEEP},
        **{f"affinity_{w:.2f}": np.full((n, k), -1, dtype=np.int64) for w in AFFINITY_SWEEP},
    }
    # Validation items are excluded in the request (the bundle already excludes the train items).
    v_indptr, v_indices = csr(split.valid.user_idx, split.valid.item_idx, split.train.n_users)
    v_rows, v_items = gather_rows(v_indptr, v_indices, ctx.users)
    valid_by_row = np.split(v_items, np.searchsorted(v_rows, np.arange(1, n)))
    # Request time: the user's first test interaction.
    test = split.test
    first = pd.Series(test.timestamps).groupby(test.user_idx).min()
    when = first.reindex(ctx.users).to_numpy()
    for r, u in enumerate(ctx.users.tolist()):
        user_id = user_ids[u]
        user, recent = _user_row(user_id, online.users)
        at = datetime.fromtimestamp(int(when[r]), tz=UTC)
        cands = cores.retriever.retrieve(
            RetrievalQuery(
                user_id=user_id,
                recent_item_ids=recent,
                count=CANDIDATE_COUNT,
                exclude_item_ids=item_ids[valid_by_row[r]].tolist(),
                user_features=_user_features(user),  # as the gateway sends them, for the query tower
                request_time=int(at.timestamp()),
            )
        )
        if not cands.item_ids:
            continue
        rows = to_data[[cores.retriever.item_pos[i] for i in cands.item_ids]]
        out["retrieval"][r, : len(rows)] = rows
        scores = cores.backend.run(cores.encoder.encode(user, at, cands.item_ids))
        order = np.argsort(-scores, kind="stable")
        out["ranked"][r, : len(order)] = rows[order]
        top = order[:RANKED_COUNT]
        ids = [cands.item_ids[i] for i in top]
        sources = [int(cands.sources[i]) for i in top]
        affinity = cands.affinity[top] if cands.affinity is not None else None

        # (key, diversity, method, graph weight, affinity weight) of each rerank run on these candidates
        runs = [
            ("diversity_0", 0.0, RERANK_METHOD, GRAPH_WEIGHT, AFFINITY_WEIGHT),
            ("diversity_default", DEFAULT_DIVERSITY, RERANK_METHOD, GRAPH_WEIGHT, AFFINITY_WEIGHT),
            *((_sweep_key(m, d), d, m, GRAPH_WEIGHT, AFFINITY_WEIGHT) for m in DiversityMethod
              for d in DIVERSITY_SWEEP),
            *((f"graph_{w:.2f}", 0.0, RERANK_METHOD, w, AFFINITY_WEIGHT) for w in GRAPH_SWEEP),
            *((f"affinity_{w:.2f}", 0.0, RERANK_METHOD, GRAPH_WEIGHT, w) for w in AFFINITY_SWEEP),
        ]  # fmt: skip
        for key, diversity, method, graph_weight, affinity_weight in runs:
            query = RerankQuery(
                ids,
                scores[top],
                k,
                sources=sources,
                affinity=affinity,
                diversity=diversity,
                method=method,
                history_item_ids=recent,
                user_id=user_id,
                graph_weight=graph_weight,
                affinity_weight=affinity_weight,
            )
            picked = cores.reranker.rerank(query).positions
            out[key][r, : len(picked)] = rows[top[picked]]
    return out


def _sweep_key(method: DiversityMethod, diversity: float) -> str:
    return f"sweep_{method.value}_{diversity:.2f}"
