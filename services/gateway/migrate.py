"""`python -m services.gateway.migrate`: brings the PostgreSQL event log schema up to date, then exits.

Reads the gateway's settings (RECSYS_GATEWAY_EVENT_LOG_DSN, RECSYS_GATEWAY_EVENT_LOG_SCHEMA); `--dsn` and
`--schema` override them. The gateway applies the same migrations at start-up, so running this first is
optional; it is the step to run before a rollout when the gateway's database user may not change the schema.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.gateway.eventlog.postgres import load_migrations, migrate
from services.gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    settings = GatewaySettings()
    parser = argparse.ArgumentParser(prog="python -m services.gateway.migrate", description=__doc__)
    parser.add_argument("--dsn", default=settings.event_log_dsn, help="PostgreSQL connection string")
    parser.add_argument("--schema", default=settings.event_log_schema, help="schema of the event log tables")
    parser.add_argument("--list", action="store_true", help="list the migrations this code knows and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in load_migrations():
            print(f"{m.version:04d}_{m.name}")
        return 0
    if not args.dsn:
        print("no DSN: set RECSYS_GATEWAY_EVENT_LOG_DSN or pass --dsn", file=sys.stderr)
        return 2
    applied = asyncio.run(migrate(args.dsn, args.schema))
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name} to schema {args.schema}")
    else:
        print(f"schema {args.schema} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
