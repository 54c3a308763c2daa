"""Where the time goes: per-span percentiles from JSON-lines trace files (OTEL_TRACES_EXPORTER=file).

    python -m tools.bench.traces traces-*.jsonl [--json]

Groups spans by (service, name) and prints count, p50, p95 and p99 of their durations in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def breakdown(paths: list[Path]) -> list[dict[str, object]]:
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in paths:
        for line in path.read_text().splitlines():
            span = json.loads(line)
            durations[(span["service"], span["name"])].append((span["end_ns"] - span["start_ns"]) / 1e6)
    rows = []
    for (service, name), ms in sorted(durations.items()):
        a = np.asarray(ms)
        rows.append(
            {
                "service": service,
                "span": name,
                "count": len(a),
                "p50_ms": round(float(np.percentile(a, 50)), 3),
                "p95_ms": round(float(np.percentile(a, 95)), 3),
                "p99_ms": round(float(np.percentile(a, 99)), 3),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = breakdown(args.files)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['service']:<10} {r['span']:<48} n={r['count']:<6} p50 {r['p50_ms']:>8} p95 {r['p95_ms']:>8} "
              f"p99 {r['p99_ms']:>8} ms", file=sys.stdout)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
