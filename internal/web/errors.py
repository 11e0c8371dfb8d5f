"""How a failed HTTP API call is answered: `{"code", "status", "message"}` and an HTTP status.

The decision is the gRPC servers' own (`rpc.ErrorInterceptor.answer`, in the "standard"
status mode): the same gim code, the same message, the same logging. `code` is the gim
code (docs/protocol.md §4), or 0 when the failure has none (a rate limit: status
RESOURCE_EXHAUSTED; a bug: INTERNAL); `status` is the gRPC status name; the HTTP status
follows the gRPC status as grpc-gateway maps it.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc import aio

from gim.internal.web.context import Aborted
from gim.pkg import rpc
from gim.pkg.errors import GIM_CODE_KEY, STANDARD_STATUS, GimError, unavailable

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class Forwarded(Exception):
    """A forwarded call's peer failed without a gim code: its status and details go on."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def forwarded_error(exc: aio.AioRpcError, peer: str) -> Exception:
    """What a failed forwarded call (e.g. UserExt, to business) raises in the gateway."""
    gim = rpc.gim_error_of(exc)
    if gim is not None:
        return gim
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return unavailable(peer)
    return Forwarded(exc.code(), exc.details() or exc.code().name.lower())


def _gim_code(trailers: Any) -> int:
    for key, value in trailers or ():
        if key == GIM_CODE_KEY:
            return int(value)
    return 0


class ErrorAnswers:
    """Exceptions -> (HTTP status, JSON body); one per listener (its log summaries)."""

    def __init__(self) -> None:
        self._grpc = rpc.ErrorInterceptor("standard")

    def answer(self, exc: Exception, method: str) -> tuple[int, dict[str, Any]]:
        if isinstance(exc, Aborted):
            status, message, code = exc.code, exc.details, _gim_code(exc.trailing_metadata)
        elif isinstance(exc, Forwarded):
            status, message, code = exc.code, exc.details, 0
        else:
            status, message, trailers = self._grpc.answer(exc, method)
            code = _gim_code(trailers)
        if not isinstance(status, grpc.StatusCode):  # "standard" mode: always one of these
            status = grpc.StatusCode.UNKNOWN
        return HTTP_STATUS.get(status, 500), body(code, status.name, message)


def body(code: int, status: str, message: str) -> dict[str, Any]:
    return {"code": code, "status": status, "message": message}


def of_error(error: GimError) -> tuple[int, dict[str, Any]]:
    """A refusal decided by the gateway itself (a body that does not parse, no such method)."""
    status = STANDARD_STATUS[error.code]
    return HTTP_STATUS[status], body(int(error.code), status.name, error.message)
