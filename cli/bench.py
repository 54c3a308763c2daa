"""`recsys bench ...`: benchmarks against the running stack or servers of their own; results as JSON on stdout,
progress on stderr (off with --json or when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from cli.errors import fail, gateway_errors
from cli.options import OUTPUT, GlobalOptions, shared_options
from client import gateway as client_gateway

bench = typer.Typer(help="Benchmarks (JSON output).", no_args_is_help=True)
T = TypeVar("T")

RANKING_BACKENDS = ("inprocess", "triton")
DIVERSITY_METHODS = tuple(client_gateway.DIVERSITY_METHODS)  # the names the gateway API takes


@bench.callback()
def _measure_as_served() -> None:
    from services.common.floating_point import flush_denormals_to_zero

    flush_denormals_to_zero()  # in-process cores are measured as the services run them


_KINDS: dict[object, str] = {int: "a whole number", float: "a number"}


def _list(text: str, option: str, parse: Callable[[str], T], allowed: Sequence[T] = ()) -> list[T]:
    """A comma list of `option` values, or a usage error naming the bad one."""
    values = []
    for part in text.split(","):
        try:
            value = parse(part.strip())
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not {_KINDS.get(parse, 'valid')}", param_hint=option) from None
        if allowed and value not in allowed:
            raise typer.BadParameter(f"{part!r} is not one of {', '.join(map(str, allowed))}", param_hint=option)
        values.append(value)
    return values


def _users(text: str) -> list[str]:
    """User ids from a range like 1-943 or a comma list."""
    if "-" in text and "," not in text:
        lo, hi = _list(text.replace("-", ","), "--users", int)
        if lo > hi:
            raise typer.BadParameter(f"empty range {text!r}", param_hint="--users")
        return [str(u) for u in range(lo, hi + 1)]
    return [u.strip() for u in text.split(",") if u.strip()]


def _require_bundle() -> None:
    from artifacts.bundle import load_current
    from services.common.settings import CommonSettings

    load_current(CommonSettings().bundle_dir)  # says to run `make train` when there is none


def _require_triton_env() -> None:
    from tools.local_triton import TRITON_VENV

    if not (TRITON_VENV / "bin" / "python").exists():
        fail(f"no Triton environment at {TRITON_VENV}; run `make triton-env` (or pass --backend inprocess)")


@contextlib.contextmanager
def _running(name: str) -> Iterator[None]:
    """A line on stderr with the time the benchmark has run, ticking while it runs (none with --json)."""
    from training.progress import progress

    bar = progress(desc=f"bench {name}", bar_format="{desc}: running {elapsed}")
    done = threading.Event()

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.close()


def _print(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, indent=2))


@bench.command("recommend")
@shared_options(("address", *OUTPUT))
def recommend(
    opts: GlobalOptions,
    calls: Annotated[int, typer.Option(min=1)] = 1000,
    count: Annotated[int, typer.Option(min=1)] = 20,
    users: Annotated[str, typer.Option(help="user ids: a range like 1-943 or a comma list")] = "1-943",
) -> None:
    """Sequential Recommend latency (running stack)."""
    from tools.bench import recommend as bench_recommend

    ids = _users(users)
    with _running("recommend"), gateway_errors(opts.address):
        result = bench_recommend.run(opts.address, calls, count, ids)
    _print(result)


@bench.command("load")
@shared_options(OUTPUT)
def load(
    opts: GlobalOptions,
    rates: Annotated[str, typer.Option(help="comma list of requests per second")] = "25,50,100,150,200",
    duration: Annotated[float, typer.Option(min=0.001, help="seconds per rate")] = 30.0,
    count: Annotated[int, typer.Option(min=1)] = 20,
    p99_limit: Annotated[float, typer.Option(help="ms; the highest rate under it is reported")] = 100.0,
    plot: Annotated[Path | None, typer.Option(dir_okay=False, help="write latency against rate as a PNG")] = None,
) -> None:
    """Open-loop load at several rates, fresh stack.

    With the time per stage from the traces of the first rate.
    """
    from tools.bench import load as bench_load

    targets = _list(rates, "--rates", float)
    if any(rate <= 0 for rate in targets):
        raise typer.BadParameter("rates must be positive", param_hint="--rates")
    _require_bundle()
    _print(bench_load.run(targets, duration, count, p99_limit, plot))  # the load generator shows its progress


@bench.command("rerank")
@shared_options(OUTPUT)
def rerank(
    opts: GlobalOptions,
    candidates: Annotated[int, typer.Option(min=1)] = 500,
    count: Annotated[int, typer.Option(min=1)] = 20,
    calls: Annotated[int, typer.Option(min=1)] = 1000,
    diversity: float = 0.5,
    methods: Annotated[str, typer.Option(help="comma list of mmr, dpp, calibrated")] = ",".join(DIVERSITY_METHODS),
) -> None:
    """Rerank latency per method (own server)."""
    from tools.bench import rerank as bench_rerank

    chosen = _list(methods, "--methods", str, DIVERSITY_METHODS)
    _require_bundle()
    with _running("rerank"):
        result = bench_rerank.run(candidates, count, calls, diversity, chosen)
    _print(result)


@bench.command("ranking")
@shared_options(OUTPUT)
def ranking(
    opts: GlobalOptions,
    backend: Annotated[str, typer.Option(help="comma list of inprocess, triton")] = ",".join(RANKING_BACKENDS),
    candidates: Annotated[str, typer.Option(help="comma list of candidate counts")] = "100,500,1000",
    concurrency: Annotated[str, typer.Option(help="comma list of concurrent callers")] = "1,8",
    requests: Annotated[int, typer.Option(min=1, help="calls per caller per configuration")] = 300,
) -> None:
    """Rank latency per backend (own servers)."""
    from tools.bench import ranking as bench_ranking

    backends = _list(backend, "--backend", str, RANKING_BACKENDS)
    sizes = _list(candidates, "--candidates", int)
    callers = _list(concurrency, "--concurrency", int)
    _require_bundle()
    if "triton" in backends:
        _require_triton_env()
    with _running("ranking"):
        result = bench_ranking.run(backends, sizes, callers, requests)
    _print(result)


@bench.command("retrieval")
@shared_options(OUTPUT)
def retrieval(
    opts: GlobalOptions,
    items: Annotated[str, typer.Option(help="comma list of catalogue sizes")] = "10000,100000",
    queries: Annotated[int, typer.Option(min=1, help="Retrieve calls per size")] = 1000,
    count: Annotated[int, typer.Option(min=1, help="candidates per call")] = 500,
    dim: Annotated[int, typer.Option(min=1)] = 64,
    index: Literal["auto", "flat", "hnsw", "ivf"] = "auto",
    plot: Annotated[
        Path | None, typer.Option(dir_okay=False, help="write a PNG of latency and memory against size here")
    ] = None,
    catalogue: Annotated[
        Literal["tower", "mixture"],
        typer.Option(
            help="tower: synthetic items embedded by the current bundle's item tower; mixture: a Gaussian mixture "
            "of vectors (no bundle needed)",
        ),
    ] = "tower",
    current_bundle: Annotated[
        bool, typer.Option("--current-bundle", help="instead: the current bundle with real users' features")
    ] = False,
) -> None:
    """Candidate core at synthetic catalogue sizes."""
    from tools.bench import retrieval as bench_retrieval

    sizes = _list(items, "--items", int)
    if current_bundle or catalogue == "tower":
        _require_bundle()
    with _running("retrieval"):
        if current_bundle:
            result = bench_retrieval.run_bundle(queries, count)
        else:
            result = bench_retrieval.run(sizes, queries, count, dim, index, plot, catalogue)
    _print(result)


@bench.command("cpu")
@shared_options(OUTPUT)
def cpu(
    opts: GlobalOptions,
    rates: Annotated[str, typer.Option(help="comma list of requests per second, one measured load each")] = "30,60",
    duration: Annotated[float, typer.Option(min=1.0, help="seconds per rate")] = 30.0,
    count: Annotated[int, typer.Option(min=1)] = 20,
    warmup: Annotated[float, typer.Option(min=0.0, help="seconds of unmeasured load first")] = 5.0,
) -> None:
    """CPU ms per Recommend for each service and in total (running stack on the default ports)."""
    from tools.bench import cpu as bench_cpu

    targets = _list(rates, "--rates", float)
    if any(rate <= 0 for rate in targets):
        raise typer.BadParameter("rates must be positive", param_hint="--rates")
    try:
        result = bench_cpu.run(targets, duration, count, warmup_s=warmup)
    except LookupError as exc:
        fail(str(exc))
    _print(result)


def _event_log_dsn(dsn: str | None) -> str:
    import os

    dsn = dsn or os.environ.get("RECSYS_GATEWAY_EVENT_LOG_DSN", "")
    if not dsn:
        fail("these benchmarks write to PostgreSQL: pass --dsn postgresql://user@host:5432/db")
    return dsn


DSN_HELP = "PostgreSQL event log (default $RECSYS_GATEWAY_EVENT_LOG_DSN); a fresh schema is made and dropped"


@bench.command("ingestion")
@shared_options(OUTPUT)
def ingestion(
    opts: GlobalOptions,
    dsn: Annotated[str | None, typer.Option(help=DSN_HELP)] = None,
    clients: Annotated[int, typer.Option(min=1)] = 8,
    batch_size: Annotated[int, typer.Option(min=1)] = 100,
    warmup: Annotated[float, typer.Option(min=0.0, help="seconds before the measured window")] = 3.0,
    duration: Annotated[float, typer.Option(min=1.0, help="seconds measured")] = 15.0,
) -> None:
    """RecordFeedback events/s into PostgreSQL, without and with fresh-feature pushes (own gateway)."""
    from tools.bench import feedback as bench_feedback

    target = _event_log_dsn(dsn)
    _require_bundle()
    with _running("ingestion"):
        result = bench_feedback.run_ingestion(target, clients, batch_size, warmup, duration)
    _print(result)


@bench.command("sigkill")
@shared_options(OUTPUT)
def sigkill(
    opts: GlobalOptions,
    dsn: Annotated[str | None, typer.Option(help=DSN_HELP)] = None,
    clients: Annotated[int, typer.Option(min=1)] = 20,
    seconds: Annotated[float, typer.Option(min=1.0, help="seconds of load, with SIGKILLs of the gateway")] = 60.0,
    batch_size: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """No acknowledged event lost across SIGKILLs of the gateway under feedback load (own gateway)."""
    from tools.bench import feedback as bench_feedback

    target = _event_log_dsn(dsn)
    _require_bundle()
    with _running("sigkill"):
        result = bench_feedback.run_sigkill(target, clients, seconds, batch_size)
    _print(result)
