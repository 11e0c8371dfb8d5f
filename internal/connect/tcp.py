"""TCP long connections: an `asyncio.Protocol` per connection, no task per connection;
plain TCP on gim's own slim transports (sockets.py), TLS on asyncio's."""

from __future__ import annotations

import asyncio
import socket
import ssl

from gim.internal.connect.context import ConnectContext
from gim.internal.connect.session import Session
from gim.internal.connect.sockets import Listener, listening_sockets
from gim.pkg import log, metrics
from gim.pkg.protocol.frames import FrameDecoder, FrameError
from gim.pkg.protocol.packets import Encoded
from gim.pkg.ratelimit import host_of

_log = log.get("connect")


def _addr(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


class CountedDecoder(FrameDecoder):
    """A FrameDecoder that counts the frames and bytes it reads (metrics)."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        bodies = super().feed(data)
        metrics.TCP_IN.add(len(data), len(bodies))
        return bodies


class TcpConnection(asyncio.Protocol):
    """The asyncio side of one TCP connection: bytes read go to its `Session`, which
    frames and handles them; what the session sends is written here."""

    __slots__ = ("context", "_transport", "_abort_timer", "session", "peer")  # one per connection

    def __init__(self, context: ConnectContext) -> None:
        self.context = context
        self.peer = ""  # "ip:port" of the client, kept: the socket forgets it once closed
        self._transport: asyncio.Transport | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self.session: Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.peer = _addr(transport.get_extra_info("peername"))
        host = host_of(self.peer)
        if not self.context.pending.admit(host):  # too many connections not signed in from there
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = CountedDecoder(self.context.config.max_body_bytes)
        self.session = Session(self, self.context, pending=host, decoder=decoder)

    def data_received(self, data: bytes) -> None:
        if self.session is None:  # refused at accept
            return
        self.session.data_received(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self.session is not None:
            reason = "closed by client" if exc is None else f"connection lost: {exc}"
            self.session.on_closed(reason)

    # -- Transport for the session ------------------------------------------------

    def send(self, out: Encoded) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.context.config.write_buffer_limit:
            # The client does not read: drop it rather than hold memory; it will resync.
            transport.abort()
            metrics.CONNECT_WRITE_BUFFER_DROPS.labels("tcp").inc()
            if self.session is not None:
                self.session.on_closed("client too slow: write buffer full")
            return
        try:
            frame = out.frame
        except FrameError as exc:  # never from a current logic: its answers and pushes fit a frame
            _log.error("output_too_large", error=str(exc))
            if self.session is not None:
                self.session.close("internal error: an answer too large for a frame")
            return
        transport.write(frame)
        metrics.TCP_OUT.add(len(frame))

    def close(self) -> None:
        """Close once the buffer is written; a client that never reads is aborted."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        loop = asyncio.get_running_loop()
        self._abort_timer = loop.call_later(self.context.config.close_timeout, transport.abort)


# Connections accepted per loop iteration (also asyncio's retry count on EMFILE); the
# server deepens the kernel's listen queue afterwards (server.LISTEN_BACKLOG).
ACCEPT_BATCH = 64


async def serve(
    context: ConnectContext, host: str, port: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server | Listener:
    """Listen for long connections; with `tls`, each speaks TLS (the same framing inside)
    and must finish its handshake within the sign-in deadline."""
    loop = asyncio.get_running_loop()
    if tls is None:
        sockets = listening_sockets(host, port, backlog=ACCEPT_BATCH, reuse_port=context.config.reuse_port)
        return Listener(loop, sockets, lambda: TcpConnection(context), batch=ACCEPT_BATCH)
    return await loop.create_server(
        lambda: TcpConnection(context),
        host,
        port,
        backlog=ACCEPT_BATCH,
        reuse_address=True,
        reuse_port=context.config.reuse_port or None,  # workers share the port
        ssl=tls,
        ssl_handshake_timeout=context.config.sign_in_timeout,
    )
