"""`HttpContext`: what a gRPC servicer method gets as its `context`, for an HTTP call.

The HTTP API calls the servicers' methods themselves (`LogicExtServicer.SendMessage(
request, context)`), so this object stands in for grpc.aio's `ServicerContext`: the call's
metadata (the identity headers), the peer (the HTTP client's address, in gRPC's
`ipv4:host:port` form), `abort` (raises `Aborted`, which the API answers like any
refusal) and the trailing metadata and status a servicer may set. Streaming, compression
and authentication contexts do not exist on this path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import grpc
from grpc import aio

MetadataLike = aio.Metadata | Sequence[tuple[str, str | bytes]]


class Aborted(Exception):
    """A servicer called `context.abort(code, details, trailing_metadata)`."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: MetadataLike = ()) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = tuple(trailing_metadata)


def peer_of(address: tuple[Any, ...] | None) -> str:
    """A socket address as gRPC writes a peer: 'ipv4:1.2.3.4:5', 'ipv6:[::1]:5'."""
    if not address:
        return ""
    host, port = str(address[0]), int(address[1])
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


class HttpContext(aio.ServicerContext[Any, Any]):
    """One HTTP call seen as a unary gRPC call (see the module docstring)."""

    def __init__(self, metadata: Iterable[tuple[str, str]], peer: str, timeout: float | None = None) -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._done_callbacks: list[Callable[[Any], None]] = []

    # -- what the servicers use ---------------------------------------------------------

    def invocation_metadata(self) -> aio.Metadata:
        return aio.Metadata(*self._metadata)

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: MetadataLike = ()) -> NoReturn:
        raise Aborted(code, details, trailing_metadata or self._trailing)

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise Aborted(status.code, status.details, status.trailing_metadata)

    def set_trailing_metadata(self, trailing_metadata: MetadataLike) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> aio.Metadata:
        return aio.Metadata(*self._trailing)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def time_remaining(self) -> float:
        """Seconds left (infinite: an HTTP call has no deadline unless one was given)."""
        return float("inf") if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._done_callbacks.append(callback)

    # -- what a unary HTTP call has no use for -------------------------------------------

    async def read(self) -> NoReturn:
        raise NotImplementedError("an HTTP call has one request message")

    async def write(self, message: Any) -> NoReturn:
        raise NotImplementedError("an HTTP call has one response message")

    async def send_initial_metadata(self, initial_metadata: MetadataLike) -> None:
        pass

    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return {}

    def peer_identities(self) -> Iterable[bytes] | None:
        return None

    def peer_identity_key(self) -> str | None:
        return None
