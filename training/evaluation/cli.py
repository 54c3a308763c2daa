"""`recsys eval` / `python -m training.evaluation`: run the offline evaluation protocol and write a report.

    recsys eval                                  random per-user 80/10/10 split, every model, the pipeline
    recsys eval --split temporal --models popularity,pipeline
    recsys eval --split-dir DIR                  a split given as train.csv, valid.csv, test.csv
    recsys eval --on-validation --models pipeline  tuning: score against the validation part, test held out
    recsys eval --list                           the model names available

Prints the path of the metrics JSON; report.md and the plots lie next to it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from artifacts.paths import DEFAULT_VAR
from training.evaluation.context import EvalConfig
from training.evaluation.harness import (
    PIPELINE_IMPLEMENTATION,
    available,
    default_out_dir,
    describe_data,
    resolve,
    run,
)
from training.evaluation.report import write_json, write_report
from training.evaluation.splits import SplitError, load_split_dir, make_split
from training.models.registry import MODELS, UnknownModel

log = logging.getLogger("training.evaluation")

REPORTS_DIR = DEFAULT_VAR / "reports"
OFFLINE_DIR = DEFAULT_VAR / "data" / "feast"


@dataclass(kw_only=True)
class EvalArgs:
    split: Literal["random", "temporal"] = "random"
    """how to split"""
    split_dir: Path | None = None
    """use train.csv, valid.csv, test.csv from this folder instead"""
    models: str | None = None
    """comma-separated model names (default: the default models and pipeline; --list shows them)"""
    on_validation: bool = False
    """score against the validation part instead of the test part (for choosing settings; the test part stays
    unseen: excluded from the rankings like the train items)"""
    seed: int = 0
    """seed of the random split and of every model"""
    out: Path | None = None
    """report folder (default var/reports/<UTC timestamp>)"""
    offline_dir: Path = OFFLINE_DIR
    """Parquet offline sources (var/data/feast)"""
    quick: bool = False
    """at most a few epochs per model (for tests)"""
    list_models: Annotated[bool, tyro.conf.arg(name="list")] = False
    """list the available models and exit"""
    verbose: Annotated[bool, tyro.conf.arg(aliases=("-v",))] = False
    """debug logging"""

    def requested(self) -> list[str] | None:
        return [n.strip() for n in self.models.split(",") if n.strip()] if self.models else None


def print_models() -> None:
    for name in available():
        spec = MODELS.get(name)
        target = spec.implementation if spec is not None else PIPELINE_IMPLEMENTATION
        extra = "" if spec is None or spec.evaluated_by_default else "  (only when named in --models)"
        print(f"{name:24s} {target}{extra}")


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(EvalArgs, args=sys.argv[1:] if argv is None else argv, prog="recsys eval", description=__doc__)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.list_models:
        print_models()
        return 0
    try:
        names = resolve(args.requested())
        from training.data.interactions import load_offline

        if not (args.offline_dir / "interactions.parquet").is_file():
            raise SplitError(f"no offline sources in {args.offline_dir}; run `make data` (python -m training.prepare)")
        started = time.perf_counter()
        data = load_offline(args.offline_dir)
        split = load_split_dir(args.split_dir, data) if args.split_dir else make_split(data, args.split, args.seed)
        if args.on_validation:
            split = split.for_validation()
        log.info("data loaded and split in %.1fs", time.perf_counter() - started)
    except (SplitError, UnknownModel) as exc:
        print(f"error: {exc}")
        return 2
    config = EvalConfig(seed=args.seed, quick=args.quick)
    out = args.out if args.out is not None else default_out_dir(REPORTS_DIR)
    log.info("report folder: %s", out)
    results = run(split, names, config, describe_data(data, args.offline_dir), lambda doc: write_json(doc, out))
    path = write_report(results, out)
    print(path)
    failed = [n for n, e in results["models"].items() if "error" in e]
    if failed:
        log.error("failed: %s (see %s)", ", ".join(failed), path)
        return 1
    return 0
