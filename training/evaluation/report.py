"""Writes the results of a run: metrics.json, report.md and PNG plots (model comparison, accuracy vs popularity)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

JSON_NAME = "metrics.json"
MARKDOWN_NAME = "report.md"
COMPARISON_PNG = "model_comparison.png"
BIAS_PNG = "popularity_bias.png"
DIVERSITY_PNG = "diversity_tradeoff.png"

ACCURACY_COLUMNS = ("ndcg", "recall", "precision", "f1", "map", "mrr", "hit_rate")
BEYOND_COLUMNS = ("coverage", "gini", "ild", "novelty", "avg_popularity")
PIPELINE_DIVERSITY_0 = "pipeline (diversity 0)"


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, NaN and infinities to null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def rows_for_tables(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Model name -> metrics, with the pipeline at diversity 0 as a row of its own; failed models left out."""
    rows: dict[str, dict[str, Any]] = {}
    for name, entry in results.get("models", {}).items():
        if "error" in entry:
            continue
        rows[name] = entry
        if name == "pipeline" and "rerank_diversity_0" in entry.get("stages", {}):
            rows[PIPELINE_DIVERSITY_0] = entry["stages"]["rerank_diversity_0"]
    return rows


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _sizes(parts: dict[str, Any]) -> str:
    return " / ".join(f"{n} {name}" for name, n in parts.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    ks = results.get("protocol", {}).get("ks", [10, 20])
    rows = rows_for_tables(results)
    split = results.get("protocol", {}).get("split", {})
    data = results.get("dataset", {})
    mach = results.get("machine", {})
    lines = [
        "# Offline evaluation",
        "",
        f"Created {results.get('created_at', '')}. Data: {data.get('users')} users, {data.get('items')} items, "
        f"{data.get('interactions')} interactions ({data.get('source', '')}). Split: **{split.get('kind')}**"
        + (f" (seed {split.get('seed')})" if split.get("seed") is not None else "")
        + f", {_sizes(split.get('interactions', {}))}; {results.get('protocol', {}).get('evaluated_users')} users "
        "evaluated.",
        "",
        f"Machine: {mach.get('cpu_count')} CPUs ({mach.get('usable_cpus')} usable), {mach.get('platform')}, "
        f"Python {mach.get('python')}. Total time {results.get('timings', {}).get('total_s')} s.",
        "",
        "Protocol: full ranking over all items, the user's train and validation items excluded; relevant = the "
        "user's test interactions (binary). See docs/evaluation.md for the definitions.",
        "",
    ]
    for k in ks:
        lines += [f"## Accuracy @{k}", ""]
        body = [[name, *(_fmt(e.get(f"{c}@{k}")) for c in ACCURACY_COLUMNS)] for name, e in rows.items()]
        lines += [*_table(["model", *ACCURACY_COLUMNS], body), ""]
    rated = {n: e for n, e in rows.items() if e.get("rmse") is not None}
    if rated:
        lines += ["## Rating prediction", ""]
        lines += _table(["model", "RMSE", "MAE"], [[n, _fmt(e["rmse"]), _fmt(e["mae"])] for n, e in rated.items()])
        lines.append("")
    k = ks[0]
    lines += [f"## Beyond accuracy @{k}", ""]
    body = [[name, *(_fmt(e.get(f"{c}@{k}"), 3) for c in BEYOND_COLUMNS)] for name, e in rows.items()]
    lines += [*_table(["model", *BEYOND_COLUMNS], body), ""]
    lines += [f"## Slices @{k}", ""]
    body = []
    for name, e in rows.items():
        cu, ci = e.get("cold_users", {}), e.get("cold_items", {})
        body.append([
            name, _fmt(cu.get("users")), _fmt(cu.get(f"ndcg@{k}")), _fmt(cu.get(f"recall@{k}")),
            _fmt(ci.get("users")), _fmt(ci.get(f"ndcg@{k}")), _fmt(ci.get(f"recall@{k}")),
        ])  # fmt: skip
    header = ["model", "cold users", "ndcg", "recall", "users with cold test items", "ndcg", "recall"]
    lines += [*_table(header, body), ""]
    pipeline = results.get("models", {}).get("pipeline", {})
    if "stages" in pipeline:
        st = pipeline["stages"]
        cfg = pipeline.get("settings", {})
        lines += [
            "## Pipeline stages",
            "",
            f"Retrieval of {cfg.get('candidate_count')} candidates, ranking, top {cfg.get('ranked_count')} to "
            f"rerank (default diversity {cfg.get('diversity')}); bundle components: "
            f"{', '.join(f'{k}={v}' for k, v in cfg.get('bundle_components', {}).items())}.",
            "",
            "| stage | metric | value |",
            "| --- | --- | --- |",
        ]
        for stage in ("retrieval", "ranking"):
            for key, value in st.get(stage, {}).items():
                lines.append(f"| {stage} | {key} | {_fmt(value)} |")
        lines += [
            "",
            "Ranking NDCG is measured on the retrieved candidates only (users with at least one test item among "
            "them; the ideal order puts those first); `retrieval_order_ndcg` is the same for the retrieval order.",
            "",
        ]
    lines += ["## Timings (s)", ""]
    body = []
    for name, e in results.get("models", {}).items():
        t = e.get("timings", {})
        body.append([name, _fmt(t.get("fit_s", t.get("train_s")), 1), _fmt(t.get("recommend_s"), 1),
                     _fmt(t.get("total_s"), 1)])  # fmt: skip
    lines += [*_table(["model", "fit / train", "recommend", "total"], body), ""]
    failed = {n: e["error"] for n, e in results.get("models", {}).items() if "error" in e}
    if failed:
        lines += ["## Not evaluated", ""]
        lines += [f"- `{n}` failed: {err}" for n, err in failed.items()]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def plot(results: dict[str, Any], out_dir: Path) -> list[str]:
    """The two PNG plots; an empty list (and a log line) when matplotlib is not importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        log.warning("no plots: matplotlib is not importable (%s)", exc)
        return []
    rows = rows_for_tables(results)
    if not rows:
        return []
    ks = results.get("protocol", {}).get("ks", [10, 20])
    k = ks[0]
    names = sorted(rows, key=lambda n: -(rows[n].get(f"ndcg@{k}") or 0.0))  # best first
    panels = [f"ndcg@{k}", f"recall@{ks[-1]}", f"hit_rate@{k}", f"coverage@{k}"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.45 * len(names) + 1.8), sharey=True)
    y = np.arange(len(names))
    for ax, metric in zip(np.atleast_1d(axes), panels, strict=True):
        values = [rows[n].get(metric) or 0.0 for n in names]
        ax.barh(y, values, color=["tab:orange" if n.startswith("pipeline") else "tab:blue" for n in names])
        ax.set_title(metric)
        ax.set_yticks(y, names)
        ax.grid(axis="x", alpha=0.3)
    np.atleast_1d(axes)[0].invert_yaxis()  # the y axis is shared: invert it once, best model on top
    fig.suptitle(f"Model comparison ({results.get('protocol', {}).get('split', {}).get('kind', '')} split)")
    fig.tight_layout()
    fig.savefig(out_dir / COMPARISON_PNG, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for n in names:
        x, acc = rows[n].get(f"avg_popularity@{k}"), rows[n].get(f"ndcg@{k}")
        if x is None or acc is None or not (math.isfinite(x) and math.isfinite(acc)):
            continue
        ax.scatter([x], [acc], color="tab:orange" if n.startswith("pipeline") else "tab:blue")
        ax.annotate(n, (x, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"average train popularity of recommended items @{k}")
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title("Accuracy vs popularity bias")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / BIAS_PNG, dpi=110)
    plt.close(fig)
    made = [COMPARISON_PNG, BIAS_PNG]
    sweep = (results.get("models", {}).get("pipeline") or {}).get("diversity_sweep")
    if sweep:
        made.append(_plot_diversity(sweep, out_dir, plt))
    return made


def _plot_diversity(sweep: list[dict[str, Any]], out_dir: Path, plt: Any) -> str:
    """NDCG@10 against intra-list diversity, coverage and novelty as the diversity strength grows."""
    panels = [("ild@10", "intra-list diversity@10"), ("coverage@10", "item coverage@10"), ("novelty@10", "novelty@10")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for method in sorted({row["method"] for row in sweep}):
            rows = [r for r in sweep if r["method"] == method]
            xs, ys = [r.get(metric) or 0.0 for r in rows], [r.get("ndcg@10") or 0.0 for r in rows]
            ax.plot(xs, ys, marker="o", label=method)
            for r, x, y in zip(rows, xs, ys, strict=True):
                ax.annotate(f"{r['diversity']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Rerank: accuracy against diversity as the strength goes from 0 to 1 (labels)")
    fig.tight_layout()
    fig.savefig(out_dir / DIVERSITY_PNG, dpi=110)
    plt.close(fig)
    return DIVERSITY_PNG


def write_json(results: dict[str, Any], out_dir: Path) -> Path:
    """Writes metrics.json (atomically: a reader never sees half a file); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JSON_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plain(results), indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Writes metrics.json, the plots and report.md into `out_dir`; returns the JSON's path."""
    path = write_json(results, out_dir)
    plots = plot(plain(results), out_dir)
    (out_dir / MARKDOWN_NAME).write_text(markdown(plain(results), plots))
    return path
