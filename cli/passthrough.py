"""`recsys train`, `recsys eval`, `recsys loadtest`: jobs with argument parsers of their own. Everything after
the command's name goes to the job's `main(argv) -> int` unchanged, `--help` included; the job's module is
imported only then (training and evaluation load torch and Ray)."""

from __future__ import annotations

import importlib
from typing import Any

import typer

from cli.errors import fail
from cli.options import GlobalOptions, current, quiet_progress

# Typer hands every argument after the command's name to it, options and --help included.
SETTINGS: dict[str, Any] = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


def run_job(ctx: typer.Context, module: str, argv: list[str]) -> None:
    """Runs `module.main(argv)` and exits with its code; argparse's exits (help, usage errors) pass through."""
    if "--json" in argv:
        quiet_progress(ctx)  # before the job imports tqdm
    try:
        code = importlib.import_module(module).main(argv)
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):
        fail(code)
    raise typer.Exit(int(code or 0))


def train(ctx: typer.Context) -> None:
    """Train one model as a Ray Train job (`make train` trains every served one and publishes a bundle).

    Its options: `recsys train --help`.
    """
    run_job(ctx, "training.ray_jobs", ctx.args)


def evaluate(ctx: typer.Context) -> None:
    """The offline evaluation protocol.

    Its options: `recsys eval --help`.
    """
    run_job(ctx, "training.evaluation.cli", ctx.args)


def loadtest(ctx: typer.Context) -> None:
    """Open-loop load on Recommend.

    Its options: `recsys loadtest --help`.
    """
    run_job(ctx, "tools.loadtest", [*_forwarded(current(ctx)), *ctx.args])


def _forwarded(opts: GlobalOptions) -> list[str]:
    """The shared options given before `loadtest`, as its own options (those after it win: they come later)."""
    if {"token", "ca_file"} & opts.given:
        fail("loadtest talks plaintext without a token: --token and --ca-file do not apply to it")
    argv = ["--address", opts.address] if "address" in opts.given else []
    argv += ["--timeout", str(opts.timeout)] if "timeout" in opts.given else []
    return argv + (["--json"] if opts.json_ else [])
