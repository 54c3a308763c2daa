"""The evaluation protocol: fit every model on the train part, rank all items for each test user, score the
lists. See docs/evaluation.md for the protocol and the metric definitions.

Full ranking: each model scores every item for every user with at least one test interaction; the user's
train and validation items are excluded (set to -inf) before taking the top k, so the lists never contain
something the user already consumed. Scoring runs over users in batches; top-k is one argpartition per batch.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.data.interactions import Interactions
from training.evaluation import metrics as m
from training.evaluation.context import QUICK_EPOCHS, EvalConfig, EvalContext
from training.evaluation.splits import Split
from training.models.base import Recommender
from training.models.registry import MODELS, ModelSpec, UnknownModel, evaluable
from training.progress import progress

log = logging.getLogger(__name__)

SCHEMA = "recsys-eval/1"
#: The served stack (training.pipeline and the services' cores, pipeline_eval.py), evaluated after the models.
PIPELINE = "pipeline"
PIPELINE_IMPLEMENTATION = "training.pipeline.train_and_publish + service cores"


def available(models: Mapping[str, ModelSpec] = MODELS) -> list[str]:
    """Every name `--models` accepts: the models with an evaluation adapter and the pipeline."""
    return [*sorted(evaluable(models)), PIPELINE]


def resolve(requested: list[str] | None, models: Mapping[str, ModelSpec] = MODELS) -> list[str]:
    """The names to evaluate (the default ones and the pipeline when `requested` is None), retrievers before
    the rankers that reuse them and the pipeline last. UnknownModel lists the valid names."""
    names = available(models)
    if requested is None:
        chosen = [n for n in names if n == PIPELINE or models[n].evaluated_by_default]
    else:
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise UnknownModel(f"unknown model(s) {', '.join(unknown)}; choose from: {', '.join(names)}")
        chosen = list(dict.fromkeys(requested))

    def stage(name: str) -> int:
        if name == PIPELINE:
            return 2
        return 1 if models[name].retriever is not None else 0

    return sorted(chosen, key=stage)


def create(
    name: str,
    config: EvalConfig,
    fitted: Mapping[str, Recommender] | None = None,
    models: Mapping[str, ModelSpec] = MODELS,
) -> Recommender:
    """An unfitted model with the run's seed (and at most QUICK_EPOCHS epochs with `quick`). A ranker gets its
    retriever: the already fitted one from `fitted` (then with fit_retriever=False, so it is not trained twice)
    or a new one."""
    spec = models[name]
    model_config = spec.configured(config.seed, QUICK_EPOCHS if config.quick else None)
    if spec.retriever is None:
        return spec.build(model_config)
    if fitted is not None and spec.retriever in fitted:
        return spec.build(model_config, fitted[spec.retriever], fit_retriever=False)
    return spec.build(model_config, create(spec.retriever, config, None, models))


def recommend_all(model: Any, ctx: EvalContext) -> np.ndarray:
    """(n_evaluated_users, max_k) top items of a fitted Recommender, batch by batch."""
    k = ctx.config.max_k
    out = np.empty((len(ctx.users), k), dtype=np.int64)
    step = ctx.batch_size()
    for start in range(0, len(ctx.users), step):
        batch = ctx.users[start : start + step]
        scores = np.asarray(model.score(batch))
        if scores.shape != (len(batch), ctx.n_items):
            raise ValueError(f"score() returned shape {scores.shape}; expected {(len(batch), ctx.n_items)}")
        rows, cols = ctx.exclusions(batch)
        out[start : start + len(batch)] = m.top_k(scores, k, rows, cols)
    return out


def evaluate_recommender(model: Any, ctx: EvalContext, implementation: str) -> dict[str, Any]:
    split = ctx.split
    started = time.perf_counter()
    model.fit(split.train, split.valid)
    fitted = time.perf_counter()
    topk = recommend_all(model, ctx)
    scored = time.perf_counter()
    entry: dict[str, Any] = {"implementation": implementation, **ctx.score_metrics(topk)}
    predict = getattr(model, "predict_ratings", None)
    if callable(predict):
        test = split.test
        try:
            predicted = np.asarray(predict(test.user_idx, test.item_idx))
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a ranker trained on implicit feedback
            log.info("no rating predictions from %s: %s", implementation, exc)
        else:
            entry.update(m.rating_errors(predicted, test.ratings))
    entry["timings"] = {
        "fit_s": round(fitted - started, 2),
        "recommend_s": round(scored - fitted, 2),
        "total_s": round(time.perf_counter() - started, 2),
    }
    return entry


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")  # only when a model loaded it: importing it here costs seconds
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = bool(torch.cuda.is_available())
    return info


def describe_data(data: Interactions, source: Path) -> dict[str, Any]:
    try:
        shown = str(source.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = source.name
    return {
        "source": shown,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": len(data),
        "ratings": "all ratings treated as implicit interactions (relevant = held out)",
    }


def protocol(split: Split, ctx: EvalContext) -> dict[str, Any]:
    c = ctx.config
    return {
        "split": split.describe(),
        "ks": list(c.ks),
        "ranking": "full ranking over all items; the user's train and validation items are excluded",
        "relevance": "binary: the user's test interactions, whatever their rating",
        "evaluated_users": len(ctx.users),
        "cold_users": f"users with <= {c.cold_user_max_train} train interactions",
        "cold_items": f"test interactions with items having <= {c.cold_item_max_train} train interactions",
        "novelty": "mean -log2 p(i), p(i) = (train count + 1) / (train interactions + items)",
        "ild": "mean pairwise cosine distance of the items' genre vectors",
        "miscalibration": "mean KL(p_u || 0.99 q_u + 0.01 p_u), genre mix p_u of the train items, q_u of the list",
        "seed": c.seed,
        "quick": c.quick,
    }


def run(
    split: Split,
    model_names: list[str] | None,
    config: EvalConfig,
    dataset: dict[str, Any],
    progress_doc: Callable[[dict[str, Any]], object] | None = None,
    models: Mapping[str, ModelSpec] = MODELS,
) -> dict[str, Any]:
    """Evaluates the named models (the default ones when None) on the split; returns the results document.
    `progress_doc` gets the document so far (with "complete": false) after each model, so a long run leaves
    results behind."""
    started = time.perf_counter()
    names = resolve(model_names, models)
    ctx = EvalContext.build(split, config)
    log.info(
        "split %s: %d train / %d valid / %d test interactions, %d users evaluated; models: %s",
        split.kind,
        len(split.train),
        len(split.valid),
        len(split.test),
        len(ctx.users),
        ", ".join(names),
    )
    results: dict[str, Any] = {}

    def document(complete: bool) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "complete": complete,
            "dataset": dataset,
            "protocol": protocol(split, ctx),
            "machine": machine(),
            "models": dict(results),
            "timings": {"total_s": round(time.perf_counter() - started, 1)},
        }

    fitted: dict[str, Recommender] = {}  # fitted models, reused as retrievers by the rankers that name them
    retrievers = {models[n].retriever for n in names if n in models}
    bar = progress(names, desc="evaluation", unit="model")
    for name in bar:
        bar.set_postfix_str(name)
        log.info("evaluating %s", name)
        t0 = time.perf_counter()
        try:
            results[name], model = evaluate(name, ctx, fitted, models)
            if name in retrievers and model is not None:
                fitted[name] = model
        except Exception as exc:  # one broken model must not lose the others' results
            log.error("%s failed: %s\n%s", name, exc, traceback.format_exc())
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "timings": {"total_s": time.perf_counter() - t0}}
            continue
        finally:
            if progress_doc is not None:
                progress_doc(document(complete=False))
        log.info("%s: ndcg@10 %.4f recall@10 %.4f (%.1fs)", name, results[name].get("ndcg@10", float("nan")),
                 results[name].get("recall@10", float("nan")), time.perf_counter() - t0)  # fmt: skip
    return document(complete=True)


def evaluate(
    name: str, ctx: EvalContext, fitted: Mapping[str, Recommender], models: Mapping[str, ModelSpec]
) -> tuple[dict[str, Any], Recommender | None]:
    """One model's (or the pipeline's) entry of the results document, and the fitted model."""
    if name == PIPELINE:
        from training.evaluation.pipeline_eval import evaluate_pipeline

        return evaluate_pipeline(ctx), None
    spec = models[name]
    model = create(name, ctx.config, fitted, models)
    entry = evaluate_recommender(model, ctx, spec.implementation)
    if spec.retriever:
        shared = spec.retriever in fitted
        entry["retriever"] = spec.retriever + (" (fitted once, shared)" if shared else "")
    return entry, model


def default_out_dir(base: Path) -> Path:
    return base / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
