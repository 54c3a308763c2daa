"""The options every command shares (gateway address, deadline, output, credentials, debug).

They are accepted before the command (`recsys --json recommend ...`), where the app's callback reads them, and
after it (`recsys recommend ... --json`), where `shared_options` adds them to the command; a value given after
the command wins.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from client.gateway import DEFAULT_ADDRESS

ADDRESS_ENV = "RECSYS_GATEWAY_ADDRESS"
TOKEN_ENV = "RECSYS_TOKEN"
DEBUG_ENV = "RECSYS_DEBUG"
DEFAULT_TIMEOUT_S = 5.0

# The help of each shared option, by the name the commands take it under.
_HELP = {
    "address": "gateway host:port",
    "timeout": "deadline per call, seconds",
    "json_": "print the answer as JSON (and no progress bars)",
    "token": "bearer token",
    "ca_file": "PEM CA bundle: talk TLS to the gateway and verify it against this",
    "debug": "print the traceback of an unexpected error",
}
ALL = tuple(_HELP)
OUTPUT = ("json_", "debug")  # for commands that do not talk to the gateway


@dataclass(frozen=True)
class GlobalOptions:
    address: str = DEFAULT_ADDRESS
    timeout: float = DEFAULT_TIMEOUT_S
    json_: bool = False
    token: str | None = None
    ca_file: Path | None = None
    debug: bool = False
    given: frozenset[str] = frozenset()  # the names set on the command line (not defaults or environment)

    def override(self, values: dict[str, Any]) -> GlobalOptions:
        """These options with those of `values` that were given (not None, flags only when set)."""
        given = {name: value for name, value in values.items() if value not in (None, False)}
        return dataclasses.replace(self, **given, given=self.given | given.keys())


def _ca_file_option() -> Any:
    return typer.Option("--ca-file", help=_HELP["ca_file"], exists=True, dir_okay=False, readable=True)


# As the app's callback declares them: with their environment variables (the defaults are GlobalOptions').
RootAddress = Annotated[str, typer.Option("--address", envvar=ADDRESS_ENV, help=_HELP["address"])]
RootTimeout = Annotated[float, typer.Option("--timeout", min=0.001, help=_HELP["timeout"])]
RootJson = Annotated[bool, typer.Option("--json", help=_HELP["json_"])]
RootToken = Annotated[str | None, typer.Option("--token", envvar=TOKEN_ENV, help=_HELP["token"])]
RootCaFile = Annotated[Path | None, _ca_file_option()]
RootDebug = Annotated[bool, typer.Option("--debug", envvar=DEBUG_ENV, help=_HELP["debug"])]

# As each command declares them: unset unless given after the command.
_COMMAND_PARAMETERS: dict[str, Any] = {
    "address": Annotated[str | None, typer.Option("--address", help=_HELP["address"])],
    "timeout": Annotated[float | None, typer.Option("--timeout", min=0.001, help=_HELP["timeout"])],
    "json_": Annotated[bool, typer.Option("--json", help=_HELP["json_"])],
    "token": Annotated[str | None, typer.Option("--token", help=_HELP["token"])],
    "ca_file": Annotated[Path | None, _ca_file_option()],
    "debug": Annotated[bool, typer.Option("--debug", help=_HELP["debug"])],
}


def current(ctx: typer.Context) -> GlobalOptions:
    """The options the app's callback read (defaults when a command runs without it, as in tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions(debug=os.environ.get(DEBUG_ENV, "") not in ("", "0"))
    return root.obj


def adopt(ctx: typer.Context, options: GlobalOptions) -> GlobalOptions:
    """Makes `options` the ones in force (the error handler reads them); --json turns progress bars off."""
    ctx.find_root().obj = options
    if options.json_:
        quiet_progress(ctx)
    return options


def quiet_progress(ctx: typer.Context) -> None:
    """No progress bars until the command ends: TQDM_DISABLE, which tqdm reads when first imported (the jobs
    import it after this) and tools.loadtest reads at each run."""
    if "TQDM_DISABLE" in os.environ:
        return
    os.environ["TQDM_DISABLE"] = "1"
    ctx.find_root().call_on_close(lambda: os.environ.pop("TQDM_DISABLE", None))


def shared_options(names: Iterable[str] = ALL) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds the shared options `names` to a command, which receives them merged as `opts: GlobalOptions`."""
    names = tuple(names)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "opts"]
        shared = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_COMMAND_PARAMETERS[name],
                default=False if name in OUTPUT else None,
            )
            for name in names
        ]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def run(ctx: typer.Context, **values: Any) -> Any:
            given = {name: values.pop(name) for name in names}
            return command(opts=adopt(ctx, current(ctx).override(given)), **values)

        run.__signature__ = signature.replace(parameters=[*own, context, *shared])  # type: ignore[attr-defined]
        return run

    return decorate
