"""Errors as one line that says what to do: `error: ...` on stderr and exit code 1, never a traceback (unless
--debug asks for it)."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from typing import NoReturn

import grpc
import typer

from cli.options import GlobalOptions

# Details gRPC gives when the client never got a connection (the server did not answer at all).
_NOT_CONNECTED = ("failed to connect", "connection refused", "dns resolution failed", "name resolution")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def describe_rpc_error(exc: grpc.RpcError, address: str | None) -> str:
    """The status and details of a failed call; a gateway that never answered says so and what to do. Without
    the `address` (a job's own call), the details, which name it."""
    code, details = _status(exc)
    status = code.name if code is not None else "UNKNOWN"
    lowered = details.lower()
    if address is None:
        where, status = "the server", f"{status}: {details}"
    else:
        where = f"the gateway at {address}"
    if code == grpc.StatusCode.UNAVAILABLE and ("handshake" in lowered or "ssl" in lowered):
        return f"TLS handshake with {where} failed ({status}); check --ca-file and the address"
    if code == grpc.StatusCode.UNAVAILABLE and any(marker in lowered for marker in _NOT_CONNECTED):
        return f"cannot reach {where} ({status}); is the stack running? `make run`"
    return status if address is None else f"{status}: {details} (from {address})"


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    # A failed call has code() and details() (grpc.Call for the sync API; grpc.aio's errors are no Call).
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    return (code() if callable(code) else None), str((details() if callable(details) else None) or exc)


@contextlib.contextmanager
def gateway_errors(address: str) -> Iterator[None]:
    """Turns a failed call to the gateway at `address` into one line naming the status and the gateway."""
    try:
        yield
    except grpc.RpcError as exc:
        fail(describe_rpc_error(exc, address))


def report_unexpected(exc: BaseException, options: GlobalOptions) -> None:
    """One line for an error no command handled; the traceback first only with --debug."""
    if options.debug:
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"error: {_one_line(exc)}", err=True)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return describe_rpc_error(exc, None)
    lines = str(exc).strip().splitlines()
    message = lines[0] + (" (more with --debug)" if len(lines) > 1 else "") if lines else ""
    # Builtin errors such as KeyError say little without their name; errors with a message of their own do.
    if type(exc).__module__ == "builtins" and not isinstance(exc, OSError | RuntimeError | ValueError):
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return message or type(exc).__name__
