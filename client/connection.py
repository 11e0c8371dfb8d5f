"""A long connection to a connect node, over TCP or WebSocket.

Requests (`request`) wait for the `Output` carrying their `request_id`; everything
else the server sends (pushed messages, errors without a request) arrives on
`pushes`. When the server closes the connection, or sends something that cannot be
parsed, `closed` is set (`error` says why) and waiting requests fail with
`ConnectionError`.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl as _ssl
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FrameDecoder, FrameError, encode_frame
from gim.pkg.protocol.packets import PacketError, input_body, parse_data, parse_output

READ_SIZE = 65_536  # bytes asked of the socket at a time (any number of frames, or part of one)


class ProtocolError(ConnectionError):
    """The server sent something this client cannot parse; the connection is dropped."""


class LongConnection:
    def __init__(self) -> None:
        self.pushes: asyncio.Queue[cx.Output] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._pending: dict[int, asyncio.Future[cx.Output]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.error: ConnectionError | None = None

    # -- transport, implemented by the subclasses ------------------------------------

    async def _write(self, body: bytes) -> None:
        raise NotImplementedError

    async def _read(self) -> bytes | None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        """Drop the connection at once (after a protocol error)."""
        raise NotImplementedError

    # -- protocol ----------------------------------------------------------------------

    def _start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while (body := await self._read()) is not None:
                out = parse_output(body)
                waiter = self._pending.pop(out.request_id, None) if out.request_id else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(out)
                else:
                    self.pushes.put_nowait(out)
        except (PacketError, ProtocolError) as exc:
            self.error = exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc))
            self._abort()
        except (OSError, asyncio.IncompleteReadError, ConnectionClosed):
            pass
        finally:
            self.closed.set()
            if self.error is None:
                self.error = ConnectionError("connection closed by the server")
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(self.error)
            self._pending.clear()

    async def send(self, package_type: int, data: bytes = b"", request_id: int = 0) -> None:
        """Send one `Input` without waiting for an answer."""
        await self._write(input_body(package_type, request_id, data))

    async def request(self, package_type: int, data: bytes = b"", timeout: float = 10.0) -> cx.Output:
        """Send one `Input` and return the `Output` that answers it."""
        if self.closed.is_set():
            raise self.error or ConnectionError("connection closed")
        request_id = next(self._ids)
        waiter: asyncio.Future[cx.Output] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        await self.send(package_type, data, request_id)
        async with asyncio.timeout(timeout):
            return await waiter

    async def sign_in(self, user_id: int, device_id: int, token: str, timeout: float = 10.0) -> cx.Output:
        data = cx.SignInInput(user_id=user_id, device_id=device_id, token=token).SerializeToString()
        return await self.request(cx.PT_SIGN_IN, data, timeout)

    async def sync(self, seq: int, timeout: float = 10.0) -> cx.SyncOutput:
        """One page; ConnectionError if the server refuses it."""
        out = await self.request(cx.PT_SYNC, cx.SyncInput(seq=seq).SerializeToString(), timeout)
        if out.code:
            raise ConnectionError(f"sync failed: {out.code} {out.message}")
        try:
            return parse_data(cx.SyncOutput, out.data)
        except PacketError as exc:
            raise ProtocolError(f"bad SyncOutput: {exc}") from None

    async def ack(self, seq: int, receive_time: int = 0) -> None:
        await self.send(cx.PT_MESSAGE, cx.MessageACK(device_ack=seq, receive_time=receive_time).SerializeToString())

    async def next_push(self, timeout: float = 10.0) -> cx.Output:
        async with asyncio.timeout(timeout):
            return await self.pushes.get()

    async def next_message(self, timeout: float = 10.0) -> cx.Message:
        """The next pushed `PT_MESSAGE`, decoded."""
        while True:
            out = await self.next_push(timeout)
            if out.type == cx.PT_MESSAGE:
                return cx.MessageSend.FromString(out.data).message


class TcpConnection(LongConnection):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._r, self._w = reader, writer
        self._decoder = FrameDecoder()
        self._bodies: deque[bytes] = deque()  # read, not handed out yet

    @classmethod
    async def open(cls, host: str, port: int, ssl: _ssl.SSLContext | None = None) -> TcpConnection:
        """Connect (with `ssl`: TLS, the server's certificate checked against `host`)."""
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        conn = cls(reader, writer)
        conn._start()
        return conn

    async def write_raw(self, data: bytes) -> None:
        """Bytes exactly as given (for testing the server's framing)."""
        self._w.write(data)
        await self._w.drain()

    async def _write(self, body: bytes) -> None:
        await self.write_raw(encode_frame(body))

    async def _read(self) -> bytes | None:
        while not self._bodies:
            data = await self._r.read(READ_SIZE)
            if not data:
                return None  # closed (a frame cut short is dropped with it)
            try:
                self._bodies.extend(self._decoder.feed(data))
            except FrameError as exc:
                raise ProtocolError(f"bad frame: {exc}") from None
        return self._bodies.popleft()

    def _abort(self) -> None:
        self._w.transport.abort()

    async def close(self) -> None:
        self._w.close()
        try:
            await self._w.wait_closed()
        except OSError:
            pass
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)


class WsConnection(LongConnection):
    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self.ws = ws

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WsConnection:
        conn = cls(await ws_connect(url, compression=None, **kwargs))
        conn._start()
        return conn

    async def _write(self, body: bytes) -> None:
        await self.ws.send(body)

    async def _read(self) -> bytes | None:
        try:
            message = await self.ws.recv()
        except ConnectionClosed:
            return None
        if not isinstance(message, bytes):
            raise ProtocolError("a text frame (the protocol has binary frames only)")
        return message

    def _abort(self) -> None:
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
