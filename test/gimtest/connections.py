"""Long connections to a connect node, and a TCP proxy that breaks what it carries."""

from __future__ import annotations

import asyncio

from gim.client.api import Credentials
from gim.client.connection import LongConnection, TcpConnection, WsConnection
from gim.internal.connect.server import ConnectServer
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FrameDecoder, FrameError, encode_frame
from gimtest.cluster import UP_TO_DATE, Cluster


class Conns:
    """Opens long connections (TCP or WebSocket) to a connect node; closes them all at the end."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.opened: list[LongConnection] = []

    async def open(
        self, transport: str = "tcp", creds: Credentials | None = None, server: ConnectServer | None = None
    ) -> LongConnection:
        server = server or self.cluster.connect
        conn: LongConnection
        if transport == "tcp":
            conn = await TcpConnection.open("127.0.0.1", server.tcp_port)
        else:
            conn = await WsConnection.open(f"ws://127.0.0.1:{server.ws_port}/ws")
        self.opened.append(conn)
        if creds is not None:
            out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
            assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
            await conn.sync(UP_TO_DATE)  # as clients do after signing in: pushes flow from here
        return conn

    async def close_all(self) -> None:
        await asyncio.gather(*(conn.close() for conn in self.opened), return_exceptions=True)


class FaultProxy:
    """A TCP proxy in front of connect's TCP port that can break what it carries:
    `drop()` closes every connection, `inject(body)` sends the clients a frame,
    `blackhole()` silently swallows both directions of the current connections.
    New connections after a fault work normally."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: list[dict[str, object]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addr(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        pair: dict[str, object] = {"client": writer, "server": up_writer, "muted": False}
        self._pairs.append(pair)
        loop = asyncio.get_running_loop()
        for job in (self._upstream(reader, up_writer, pair), self._downstream(up_reader, writer, pair)):
            task = loop.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: dict[str, object]
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if not pair["muted"]:
                    writer.write(chunk)
        except OSError:
            pass
        finally:
            self._close(pair)

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: dict[str, object]
    ) -> None:
        """Whole frames only, so that an injected frame never lands inside another."""
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for body in decoder.feed(data):
                    if not pair["muted"]:
                        writer.write(encode_frame(body))
        except (OSError, FrameError):
            pass
        finally:
            self._close(pair)

    def _close(self, pair: dict[str, object]) -> None:
        for side in ("client", "server"):
            pair[side].close()  # type: ignore[attr-defined]
        if pair in self._pairs:
            self._pairs.remove(pair)

    def drop(self) -> None:
        for pair in list(self._pairs):
            self._close(pair)

    def inject(self, body: bytes) -> None:
        for pair in self._pairs:
            pair["client"].write(encode_frame(body))  # type: ignore[attr-defined]

    def blackhole(self) -> None:
        for pair in self._pairs:
            pair["muted"] = True

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
