"""Gets the data and writes the Feast offline sources: `python -m training.prepare`.

By default MovieLens-100K is fetched (see training/data/movielens.py); `--source DIR` reads a GroupLens
`ml-100k` folder or RecBole atomic files instead; `--synthetic USERSxITEMS` generates a data set.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from artifacts.paths import DEFAULT_VAR
from training.data.event_export import FILE_NAME as FEEDBACK_FILE
from training.data.event_export import empty_events, write_events
from training.data.movielens import DatasetError, load_movielens_100k
from training.data.offline import OFFLINE_DIR, load_into_postgres, write_offline_sources
from training.data.synthetic import generate
from training.progress import progress

log = logging.getLogger("training.prepare")

RAW_DIR = DEFAULT_VAR / "data" / "raw"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, help="a GroupLens ml-100k folder or RecBole atomic files")
    parser.add_argument("--synthetic", metavar="USERSxITEMS", help="generate a synthetic data set instead")
    parser.add_argument("--out", type=Path, default=OFFLINE_DIR, help="where the Parquet sources go")
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        help="also load the sources into PostgreSQL, for the `postgres` offline store (password from PGPASSWORD)",
    )
    parser.add_argument("--schema", default="feast", help="PostgreSQL schema of the source tables (--postgres)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    bar = progress(total=3 if args.postgres else 2, desc="prepare", unit="step")
    bar.set_postfix_str("data set")
    try:
        if args.synthetic:
            users, items = (int(x) for x in args.synthetic.lower().split("x"))
            dataset = generate(users, items)
        else:
            dataset = load_movielens_100k(args.source, cache_dir=RAW_DIR)
    except (DatasetError, ValueError) as exc:
        bar.close()
        parser.exit(2, f"error: {exc}\n")
    bar.update()
    bar.set_postfix_str("offline sources")
    paths = write_offline_sources(dataset, args.out)
    if not (args.out / FEEDBACK_FILE).exists():  # the feedback source exists before any event is exported
        write_events(empty_events(), args.out)
    bar.update()
    log.info(
        "%s: %d interactions, %d users, %d items -> %s (%.1fs)",
        dataset.name,
        len(dataset.interactions),
        len(dataset.users),
        len(dataset.items),
        args.out,
        time.perf_counter() - started,
    )
    for path in paths.values():
        log.info("  %s", path)
    if args.postgres:
        bar.set_postfix_str("PostgreSQL")
        counts = load_into_postgres(paths, args.postgres, args.schema)
        bar.update()
        log.info("loaded into PostgreSQL schema %s: %s", args.schema, counts)
    bar.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
