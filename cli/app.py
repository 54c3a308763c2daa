"""`recsys`: a command-line client for the running stack, and the offline jobs (train, eval, loadtest, bench).

The gateway address comes from --address, else $RECSYS_GATEWAY_ADDRESS, else the local stack (127.0.0.1:50051).
Output is a table for people; --json prints the response as JSON for scripts. The shared options work before
and after the command: `recsys --json recommend --user 1` and `recsys recommend --user 1 --json`. Errors are
one line on stderr (`--debug` or RECSYS_DEBUG=1 adds the traceback of an unexpected one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from cli import gateway_commands, options, passthrough
from cli.bench import bench
from cli.errors import fail, report_unexpected
from cli.options import GlobalOptions, current


class _OneLineErrors(TyperGroup):
    """Turns an error no command handled into one line and exit code 1 (the traceback only with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):  # Typer handles these itself
            raise
        except SystemExit as exc:  # raise SystemExit("message") is how some jobs stop with a reason
            if isinstance(exc.code, str):
                fail(exc.code)
            raise
        except Exception as exc:
            report_unexpected(exc, current(ctx))
            raise typer.Exit(1) from exc


app = typer.Typer(
    name="recsys",
    cls=_OneLineErrors,
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, and usage errors as one line under the usage
)
DEFAULTS = GlobalOptions()


@app.callback()
def _root(
    ctx: typer.Context,
    address: options.RootAddress = DEFAULTS.address,
    timeout: options.RootTimeout = DEFAULTS.timeout,
    json_: options.RootJson = DEFAULTS.json_,
    token: options.RootToken = DEFAULTS.token,
    ca_file: options.RootCaFile = DEFAULTS.ca_file,
    debug: options.RootDebug = DEFAULTS.debug,
) -> None:
    given = frozenset(
        name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    )
    options.adopt(ctx, GlobalOptions(address, timeout, json_, token, ca_file, debug, given))


app.command()(gateway_commands.recommend)
app.command()(gateway_commands.similar)
app.command()(gateway_commands.feedback)
app.command()(gateway_commands.health)
app.command(**passthrough.SETTINGS)(passthrough.train)
app.command("eval", **passthrough.SETTINGS)(passthrough.evaluate)
app.command(**passthrough.SETTINGS)(passthrough.loadtest)
app.add_typer(bench, name="bench")


def main(argv: Sequence[str] | None = None) -> int:
    """The `recsys` command; returns its exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="recsys")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
