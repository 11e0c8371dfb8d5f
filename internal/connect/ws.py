"""WebSocket long connections on `/ws`: one binary frame per packet, no length prefix."""

from __future__ import annotations

import asyncio
import http
from collections import deque
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gim.internal.connect.session import Node, Session
from gim.pkg import log
from gim.pkg.errors import Code

_log = log.get("ws")

PATH = "/ws"
OUTBOX_LIMIT = 1024  # queued packets before a client that does not read is dropped


class WsConnection:
    """The session's transport over one WebSocket; writes go through a small outbox."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        host, port = ws.remote_address[:2] if ws.remote_address else ("?", 0)
        self.client_addr = f"{host}:{port}"
        self._outbox: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.session: Session | None = None

    def send(self, body: bytes) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.clear()
            if self.session is not None:
                self.session.close("client too slow: outbox full")
            return
        self._outbox.append(body)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._outbox:
                await self.ws.send(self._outbox.popleft())
        except ConnectionClosed:
            self._outbox.clear()
        finally:
            self._writer = None

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until what is queued has been handed to the socket."""
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=timeout)

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        await self.drain()
        await self.ws.close()


def _only_ws_path(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path != PATH:
        return connection.respond(http.HTTPStatus.NOT_FOUND, f"WebSocket endpoint is {PATH}\n")
    return None


async def _handle(node: Node, ws: ServerConnection) -> None:
    conn = WsConnection(ws)
    session = conn.session = Session(conn, node)
    try:
        query = parse_qs(urlsplit(ws.request.path).query) if ws.request else {}
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
            session.on_body(message)
    except ConnectionClosed:
        pass
    finally:
        session.on_closed()
        await conn.drain()


async def serve(node: Node, host: str, port: int) -> Server:
    return await ws_serve(
        lambda ws: _handle(node, ws),
        host,
        port,
        process_request=_only_ws_path,
        compression=None,
        max_size=node.config.max_body_bytes,
        max_queue=16,
        ping_interval=None,  # the application heartbeat and idle eviction keep watch
        backlog=4096,
    )
