"""Snapshots the embedded (SQLite) event log into the file offline store: `python -m training.data.event_export`.

With the PostgreSQL offline store this step is not needed: its feedback source reads the event log table.
Writes `feedback_events.parquet` (training/data/training_data.py EVENT_COLUMNS) next to the other sources,
atomically, so a training run never reads a half-written file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
from pathlib import Path

import pandas as pd

from services.gateway.settings import GatewaySettings
from training.data.offline import OFFLINE_DIR
from training.data.training_data import EVENT_COLUMNS

log = logging.getLogger("training.event_export")

FILE_NAME = "feedback_events.parquet"


def empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=str),
            "item_id": pd.Series([], dtype=str),
            "event_type": pd.Series([], dtype=str),
            "value": pd.Series([], dtype="float64"),
            "event_timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    )


def read_sqlite_events(path: Path) -> pd.DataFrame:
    if not path.exists():
        return empty_events()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        frame = pd.read_sql_query("SELECT user_id, item_id, event_type, value, ts FROM events ORDER BY ts", conn)
    return frame.assign(event_timestamp=pd.to_datetime(frame.pop("ts"), unit="s", utc=True))[list(EVENT_COLUMNS)]


def write_events(events: pd.DataFrame, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    events.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--event-log", type=Path, default=GatewaySettings().event_log_path, help="SQLite event log")
    parser.add_argument("--out", type=Path, default=OFFLINE_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    events = read_sqlite_events(args.event_log)
    path = write_events(events, args.out)
    log.info("exported %d feedback events from %s to %s", len(events), args.event_log, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
