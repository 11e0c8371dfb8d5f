"""What gim's server interceptors share: the coroutine behind a unary method handler, and
the same handler around another coroutine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
from grpc import aio

# generic only in the type stubs: spelled as strings, never evaluated at run time
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Unary: TypeAlias = "Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


def unary_of(handler: Handler | None) -> Unary | None:
    """The coroutine that answers `handler`'s calls; None for no handler or a streaming one
    (an aio server holds coroutine handlers; the stubs type them as plain functions)."""
    if handler is None or handler.unary_unary is None:
        return None
    return cast("Unary", handler.unary_unary)


def answered_by(handler: Handler, unary: Unary) -> Handler:
    """`handler` with its calls answered by `unary` (same (de)serialization)."""
    return grpc.unary_unary_rpc_method_handler(
        unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
