"""`recsys eval` / `python -m training.evaluation`: run the offline evaluation protocol and write a report.

    recsys eval                                  random per-user 80/10/10 split, every model, the pipeline
    recsys eval --split temporal --models popularity,pipeline
    recsys eval --split-dir DIR                  a split given as train.csv, valid.csv, test.csv
    recsys eval --on-validation --models pipeline  tuning: score against the validation part, test held out
    recsys eval --list                           the model names available

Prints the path of the metrics JSON; report.md and the plots lie next to it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from artifacts.paths import DEFAULT_VAR
from training.evaluation.context import EvalConfig
from training.evaluation.harness import default_out_dir, describe_data, run
from training.evaluation.registry import PIPELINE, UnknownModel, discover
from training.evaluation.report import write_json, write_report
from training.evaluation.splits import SplitError, load_split_dir, make_split

log = logging.getLogger("training.evaluation")

REPORTS_DIR = DEFAULT_VAR / "reports"
OFFLINE_DIR = DEFAULT_VAR / "data" / "feast"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recsys eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--split", choices=("random", "temporal"), default="random", help="how to split (default random)")
    p.add_argument("--split-dir", type=Path, help="use train.csv, valid.csv, test.csv from this folder instead")
    p.add_argument("--models", help=f"comma-separated model names (default: all, and {PIPELINE})")
    p.add_argument(
        "--on-validation",
        action="store_true",
        help="score against the validation part instead of the test part (for choosing settings; the test part "
        "stays unseen: excluded from the rankings like the train items)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random split and of every model (default 0)")
    p.add_argument("--out", type=Path, help="report folder (default var/reports/<UTC timestamp>)")
    p.add_argument("--offline-dir", type=Path, default=OFFLINE_DIR, help="Parquet offline sources (var/data/feast)")
    p.add_argument("--quick", action="store_true", help="at most a few epochs per model (for tests)")
    p.add_argument("--list", action="store_true", help="list the available models and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    requested = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    registry = discover(wanted=None if args.list else requested)
    if args.list:
        for name in [*registry.names(), PIPELINE]:
            entry = registry.entries.get(name)
            target = entry.target if entry is not None else "training.pipeline.train_and_publish + service cores"
            extra = "" if entry is None or entry.default else "  (only when named in --models)"
            print(f"{name:24s} {target}{extra}")
        for module, problem in registry.problems.items():
            print(f"(skipped {module}: {problem})")
        return 0
    try:
        names = registry.resolve(requested)
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
    results = run(
        split, names, config, describe_data(data, args.offline_dir), registry, lambda doc: write_json(doc, out)
    )
    path = write_report(results, out)
    print(path)
    failed = [n for n, e in results["models"].items() if "error" in e]
    if failed:
        log.error("failed: %s (see %s)", ", ".join(failed), path)
        return 1
    return 0
