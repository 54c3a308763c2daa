"""`recsys`: a command-line client for the running stack.

    recsys recommend --user 196 [--count 10] [--genre Comedy] [--diversity 0.3]
        [--diversity-method mmr|dpp|calibrated] [--explain]
    recsys similar --item 50 [--count 10]
    recsys feedback --user 196 --item 50 --type click [--value 1]
    recsys health
    recsys train [--model NAME] [...]       training as Ray jobs (python -m training.ray_jobs --help)
    recsys eval [--split-dir DIR] [...]     the offline evaluation protocol (python -m training.evaluation --help)
    recsys loadtest --rate 50 --duration 30 [--json]   open-loop load on Recommend

The gateway address comes from --address, else $RECSYS_GATEWAY_ADDRESS, else the local stack
(127.0.0.1:50051). Output is a table for people; --json prints the response as JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.gateway import (
    DEFAULT_ADDRESS,
    DEVICES,
    FEEDBACK_TYPES,
    format_recommendations,
    format_similar,
    open_channel,
    to_json,
)
from recsys.common.v1 import common_pb2
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc

# Commands with their own argument parsers; imported only when used (training and evaluation load torch and ray).
OFFLINE_COMMANDS = {"train": "training.ray_jobs", "eval": "training.evaluation.cli", "loadtest": "tools.loadtest"}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in OFFLINE_COMMANDS:
        import importlib

        module = importlib.import_module(OFFLINE_COMMANDS[args_list[0]])
        return int(module.main(args_list[1:]))
    parser = argparse.ArgumentParser(
        prog="recsys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default=os.environ.get("RECSYS_GATEWAY_ADDRESS", DEFAULT_ADDRESS))
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--token", default=os.environ.get("RECSYS_TOKEN"), help="bearer token (or $RECSYS_TOKEN)")
    parser.add_argument("--ca-file", help="PEM CA bundle: talk TLS to the gateway and verify it against this")
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("recommend", help="recommendations for a user")
    rec.add_argument("--user", required=True)
    rec.add_argument("--count", type=int, default=10)
    rec.add_argument("--genre", action="append", default=[], help="only items of this genre (repeatable)")
    rec.add_argument("--exclude-genre", action="append", default=[])
    rec.add_argument("--exclude-item", action="append", default=[])
    rec.add_argument("--diversity", type=float)
    rec.add_argument(
        "--diversity-method", choices=["mmr", "dpp", "calibrated"], help="the rerank service's default when unset"
    )
    rec.add_argument("--device", choices=sorted(DEVICES), default="unspecified")
    rec.add_argument("--surface", default="cli")
    rec.add_argument("--no-explain", action="store_true", help="do not ask for reasons")

    sim = sub.add_parser("similar", help="items similar to an item")
    sim.add_argument("--item", required=True)
    sim.add_argument("--count", type=int, default=10)

    fb = sub.add_parser("feedback", help="record one interaction")
    fb.add_argument("--user", required=True)
    fb.add_argument("--item", required=True)
    fb.add_argument("--type", choices=sorted(FEEDBACK_TYPES), default="click")
    fb.add_argument("--value", type=float, default=1.0)
    fb.add_argument("--event-id", default=None, help="idempotency key (a new one by default)")

    sub.add_parser("health", help="health of the gateway")

    bench = sub.add_parser("bench", help="benchmarks against the running stack (JSON output)")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    rb = bench_sub.add_parser("recommend", help="sequential Recommend latency")
    rb.add_argument("--calls", type=int, default=1000)
    rb.add_argument("--count", type=int, default=20)
    rb.add_argument("--users", default="1-943", help="user ids: a range like 1-943 or a comma list")
    bl = bench_sub.add_parser("load", help="open-loop load at several rates on a fresh stack, with a stage breakdown")
    bl.add_argument("--rates", default="25,50,100,150,200", help="comma list of requests per second")
    bl.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    bl.add_argument("--count", type=int, default=20)
    bl.add_argument("--p99-limit", type=float, default=100.0, help="ms; the highest rate under it is reported")
    bl.add_argument("--plot", type=Path, help="write latency against rate as a PNG")
    rr = bench_sub.add_parser("rerank", help="Rerank latency per diversity method (starts its own server)")
    rr.add_argument("--candidates", type=int, default=500)
    rr.add_argument("--count", type=int, default=20)
    rr.add_argument("--calls", type=int, default=1000)
    rr.add_argument("--diversity", type=float, default=0.5)
    rr.add_argument("--methods", default="mmr,dpp,calibrated")
    rk = bench_sub.add_parser("ranking", help="Rank latency/throughput per backend (starts its own servers)")
    rk.add_argument("--backend", default="inprocess,triton", help="comma list of inprocess, triton")
    rk.add_argument("--candidates", default="100,500,1000", help="comma list of candidate counts")
    rk.add_argument("--concurrency", default="1,8", help="comma list of concurrent callers")
    rk.add_argument("--requests", type=int, default=300, help="calls per caller per configuration")

    rt = bench_sub.add_parser("retrieval", help="candidate core at synthetic catalogue sizes (in-process)")
    rt.add_argument("--items", default="10000,100000", help="comma list of catalogue sizes")
    rt.add_argument("--queries", type=int, default=1000, help="Retrieve calls per size")
    rt.add_argument("--count", type=int, default=500, help="candidates per call")
    rt.add_argument("--dim", type=int, default=64)
    rt.add_argument("--index", default="auto", choices=["auto", "flat", "hnsw", "ivf"])
    rt.add_argument("--plot", default=None, help="write a PNG of latency and memory against size here")
    rt.add_argument(
        "--catalogue",
        default="tower",
        choices=["tower", "mixture"],
        help="tower: synthetic items embedded by the current bundle's item tower (default); mixture: a Gaussian "
        "mixture of vectors (no bundle needed)",
    )
    rt.add_argument(
        "--current-bundle", action="store_true", help="instead: the current bundle with real users' features"
    )

    args = parser.parse_args(args_list)
    with open_channel(args.address, args.ca_file, args.token) as channel:
        try:
            return _run(args, channel)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()} (from {args.address})", file=sys.stderr)
            return 1


def _print(message: Any, as_json: bool, text: str) -> None:
    print(to_json(message) if as_json else text)


def _run(args: argparse.Namespace, channel: grpc.Channel) -> int:
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    if args.command == "bench":
        from services.common.floating_point import flush_denormals_to_zero

        flush_denormals_to_zero()  # in-process cores are measured as the services run them
    if args.command == "recommend":
        request = gateway_pb2.RecommendRequest(
            user_id=args.user,
            count=args.count,
            context=common_pb2.RequestContext(device=DEVICES[args.device], surface=args.surface),
            filter=common_pb2.ItemFilter(include_genres=args.genre, exclude_genres=args.exclude_genre),
            exclude_item_ids=args.exclude_item,
            explain=not args.no_explain,
        )
        if args.diversity is not None:
            request.diversity = args.diversity
        if args.diversity_method is not None:
            enum_name = f"DIVERSITY_METHOD_{args.diversity_method.upper()}"
            request.diversity_method = getattr(common_pb2, enum_name)
        reply = stub.Recommend(request, timeout=args.timeout)
        _print(reply, args.json, format_recommendations(args.user, reply))
    elif args.command == "similar":
        reply = stub.SimilarItems(
            gateway_pb2.SimilarItemsRequest(item_id=args.item, count=args.count), timeout=args.timeout
        )
        _print(reply, args.json, format_similar(args.item, reply))
    elif args.command == "feedback":
        event = gateway_pb2.FeedbackEvent(
            event_id=args.event_id or uuid.uuid4().hex,
            user_id=args.user,
            item_id=args.item,
            type=FEEDBACK_TYPES[args.type],
            value=args.value,
        )
        event.timestamp.FromNanoseconds(time.time_ns())
        reply = stub.RecordFeedback(gateway_pb2.RecordFeedbackRequest(events=[event]), timeout=args.timeout)
        text = f"accepted {reply.accepted} event(s), {reply.duplicates} already recorded"
        text += "".join(f"\n  rejected #{r.index} {r.event_id}: {r.reason}" for r in reply.rejected)
        _print(reply, args.json, text)
        if reply.rejected:
            return 1
    elif args.command == "bench" and args.target == "load":
        from tools.bench import load as bench_load

        rates = [float(r) for r in args.rates.split(",")]
        print(json.dumps(bench_load.run(rates, args.duration, args.count, args.p99_limit, args.plot), indent=2))
    elif args.command == "bench" and args.target == "rerank":
        from tools.bench import rerank as bench_rerank

        result = bench_rerank.run(args.candidates, args.count, args.calls, args.diversity, args.methods.split(","))
        print(json.dumps(result, indent=2))
    elif args.command == "bench" and args.target == "retrieval":
        from pathlib import Path

        from tools.bench import retrieval as bench_retrieval

        if args.current_bundle:
            print(json.dumps(bench_retrieval.run_bundle(args.queries, args.count), indent=2))
            return 0
        result = bench_retrieval.run(
            [int(x) for x in args.items.split(",")],
            args.queries,
            args.count,
            args.dim,
            args.index,
            Path(args.plot) if args.plot else None,
            args.catalogue,
        )
        print(json.dumps(result, indent=2))
    elif args.command == "bench" and args.target == "ranking":
        from tools.bench import ranking as bench_ranking

        result = bench_ranking.run(
            args.backend.split(","),
            [int(x) for x in args.candidates.split(",")],
            [int(x) for x in args.concurrency.split(",")],
            args.requests,
        )
        print(json.dumps(result, indent=2))
    elif args.command == "bench":
        from tools.bench import recommend as bench_recommend

        if "-" in args.users and "," not in args.users:
            lo, hi = (int(x) for x in args.users.split("-"))
            users = [str(u) for u in range(lo, hi + 1)]
        else:
            users = args.users.split(",")
        print(json.dumps(bench_recommend.run(args.address, args.calls, args.count, users), indent=2))
    elif args.command == "health":
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        _print(reply, args.json, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
