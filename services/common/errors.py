"""One exception taxonomy for the whole suite, mapped to gRPC status codes in one place.

Handlers raise these; `ErrorInterceptor` turns them into a status and a message a client developer can act
on. Anything else becomes INTERNAL with a request-neutral message; the traceback stays in the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from artifacts.bundle import BundleError

log = logging.getLogger(__name__)


class RecsysError(Exception):
    """Base class: an error with a gRPC status code and a client-facing message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RecsysError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RecsysError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(RecsysError):
    """A dependency or the service itself cannot serve now; the client may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class FailedPrecondition(RecsysError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class _Undecodable(str):
    """Stands in for a request whose bytes did not decode, so the handler can answer INVALID_ARGUMENT."""


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by unary handlers to statuses; never leaks a traceback to the client."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        decode = handler.request_deserializer

        def safe_decode(data: bytes) -> Any:
            # gRPC would answer UNKNOWN (and log a traceback) for bytes that are not the request message.
            try:
                return decode(data) if decode is not None else data
            except Exception as exc:  # DecodeError, or anything a deserializer raises on garbage
                return _Undecodable(str(exc))

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid message: {request}")
            try:
                return await inner(request, context)
            except RecsysError as exc:
                await context.abort(exc.code, exc.message)
            except BundleError as exc:  # the bundle a request needs does not match this service
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, exc.message)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see server logs")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=safe_decode,
            response_serializer=handler.response_serializer,
        )
