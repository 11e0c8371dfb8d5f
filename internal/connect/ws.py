"""WebSocket long connections on `/ws`: one binary frame per packet, no length prefix."""

from __future__ import annotations

import asyncio
import http
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from gim.internal.connect.context import ConnectContext
from gim.internal.connect.session import Session
from gim.internal.connect.tcp import ACCEPT_BATCH
from gim.pkg import log, metrics
from gim.pkg.errors import Code
from gim.pkg.protocol.packets import Encoded

_log = log.get("ws")

PATH = "/ws"


class WsConnection:
    """The session's transport over one WebSocket; writes go through an outbox.

    The outbox and the socket's write buffer together are bounded by
    `write_buffer_limit` bytes, as for TCP: a client that does not read is aborted.
    """

    __slots__ = ("ws", "context", "peer", "_outbox", "_queued", "_writer", "_closing", "session")  # one per connection

    def __init__(self, ws: ServerConnection, context: ConnectContext) -> None:
        self.ws = ws
        self.context = context
        host, port = ws.remote_address[:2] if ws.remote_address else ("?", 0)
        self.peer = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        self._outbox: deque[bytes] | None = None  # only while writes wait (an empty deque is 600 bytes)
        self._queued = 0  # bytes in the outbox
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.session: Session | None = None

    def _buffered(self) -> int:
        return self._queued + self.ws.transport.get_write_buffer_size()

    def send(self, out: Encoded) -> None:
        if self._closing:
            return
        if self._buffered() + len(out.body) > self.context.config.write_buffer_limit:
            self._closing = True
            self._outbox = None
            self._queued = 0
            self.ws.transport.abort()
            metrics.CONNECT_WRITE_BUFFER_DROPS.labels("ws").inc()
            if self.session is not None:
                self.session.on_closed("client too slow: write buffer full")
            return
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(out.body)
        self._queued += len(out.body)
        if self._writer is None:
            self._writer = self.context.spawn(self._write())

    async def _write(self) -> None:
        try:
            while self._outbox:
                body = self._outbox.popleft()
                self._queued -= len(body)
                await self.ws.send(body)
                metrics.WS_OUT.add(len(body))
        except ConnectionClosed:
            self._queued = 0
        finally:
            self._outbox = None  # emptied (or dropped with the connection)
            self._writer = None

    async def wait_written(self) -> None:
        """Wait (bounded) until what is queued has been handed to the socket."""
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=self.context.config.close_timeout)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.context.spawn(self._close())

    async def _close(self) -> None:
        await self.wait_written()
        await self.ws.close()  # the closing handshake is bounded by close_timeout


def _client_host(ws: ServerConnection) -> str:
    return str(ws.remote_address[0]) if ws.remote_address else ""


def _checks(context: ConnectContext) -> Callable[[ServerConnection, Request], Response | None]:
    """The handshake's checks: the path, then the cap on connections not signed in yet
    from the client's address (pending.py): HTTP 429 past it."""

    def check(connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"WebSocket endpoint is {PATH}\n")
        if context.pending.full(_client_host(connection)):
            return connection.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS, "too many connections not signed in from this address\n"
            )
        return None

    return check


async def _handle(context: ConnectContext, ws: ServerConnection) -> None:
    host = _client_host(ws)
    if not context.pending.admit(host):  # others from there finished their handshakes meanwhile
        await ws.close(CloseCode.TRY_AGAIN_LATER, "too many connections not signed in from this address")
        return
    conn = WsConnection(ws, context)
    session = conn.session = Session(conn, context, pending=host)
    try:
        query = parse_qs(urlsplit(ws.request.path).query) if ws.request else {}
        # The handshake's headers (kilobytes) are not needed once the connection is open;
        # websockets keeps them for the connection's life (the request itself marks the
        # handshake as done there, so it stays, emptied).
        if ws.request is not None:
            ws.request.headers.clear()
        ws.response = None
        if "token" in query:  # legacy clients sign in with query parameters
            try:
                user_id = int(query.get("user_id", ["0"])[0])
                device_id = int(query.get("device_id", ["0"])[0])
            except ValueError:
                session.fail(Code.UNAUTHORIZED, "user_id and device_id must be numbers")
                return
            if not await session.sign_in(user_id, device_id, query["token"][0]):
                return
        async for message in ws:
            if isinstance(message, str):
                session.fail(Code.BAD_REQUEST, "text frames are not allowed: send binary frames")
                break
            metrics.WS_IN.add(len(message))
            session.on_body(message)
    except ConnectionClosed:
        pass
    finally:
        session.on_closed()
        await conn.wait_written()


async def serve(context: ConnectContext, host: str, port: int, tls: ssl.SSLContext | None = None) -> Server:
    """Listen for WebSocket long connections; with `tls`, WSS (the TLS handshake bounded
    by the sign-in deadline)."""
    return await ws_serve(
        lambda ws: _handle(context, ws),
        host,
        port,
        process_request=_checks(context),
        compression=None,
        max_size=context.config.max_body_bytes,
        max_queue=16,
        close_timeout=context.config.close_timeout,
        ping_interval=None,  # the application heartbeat and idle eviction keep watch
        backlog=ACCEPT_BATCH,  # see tcp.ACCEPT_BATCH
        reuse_port=context.config.reuse_port or None,  # workers share the port
        ssl=tls,
        ssl_handshake_timeout=context.config.sign_in_timeout if tls else None,
    )
