"""Plain TCP on the event loop's selector, without asyncio's transports.

asyncio's socket transport costs about 1.3 KiB a connection (an instance dict, the
socket's name and peer name kept as extra info, a weak reference, an accept task) where
a long connection needs a socket, a read callback and, only while the client reads
slowly, a write buffer. `Listener` accepts in batches and gives each accepted socket a
`SocketTransport` (about 0.1 KiB) that reads and writes it from the loop's own
`add_reader`/`add_writer` callbacks, for an `asyncio.Protocol` as asyncio would.

TLS listeners keep asyncio's transports (`loop.create_server`): TLS needs its buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

from gim.pkg import log

_log = log.get("connect")

READ_SIZE = 256 * 1024  # bytes read per ready socket at most (asyncio's figure)
# errors that mean "the process or the system is out of descriptors or memory": the
# listening socket pauses for ACCEPT_PAUSE seconds instead of failing every accept
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_PAUSE = 1.0

_holding: list[SocketTransport] | None = None  # inside `held_writes`: the connections written to


@contextlib.contextmanager
def held_writes() -> Iterator[None]:
    """What is written to a `SocketTransport` inside the block is sent at its end, one
    send per connection: a batch of pushes holding several messages for one device costs
    one system call for that device, not one a message. The block must not await (one
    loop, one thread); a nested block joins the outer one."""
    global _holding
    if _holding is not None:
        yield
        return
    held: list[SocketTransport] = []
    _holding = held
    try:
        yield
    finally:
        _holding = None
        for transport in held:
            transport._write_held()


class SocketTransport(asyncio.Transport):
    """One accepted, non-blocking socket and its protocol.

    Writes go straight to the socket; what it does not take waits in a buffer (made
    only then) written when the socket is writable. `close()` writes that buffer first;
    `abort()` does not. The protocol's `connection_lost` comes once, on the next loop
    iteration, as with asyncio's transports."""

    __slots__ = (
        "_loop",
        "_sock",
        "_fd",
        "_protocol",
        "_buffer",
        "_held",
        "_closing",
        "_lost",
        "_peername",
    )  # one per connection

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol, peername: object = None
    ) -> None:
        """`peername`: the client's address as accept() gave it, kept only while the
        protocol's `connection_made` runs (a protocol that needs it keeps it)."""
        # asyncio.BaseTransport.__init__ is not called: its extra-info dict is what is saved
        self._loop = loop
        self._sock = sock
        # the loop is given the descriptor, not the socket: its look-ups would format the
        # socket's repr (two system calls) for each one that is not registered yet
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer: bytearray | None = None  # only while the socket does not take everything
        self._held: bytearray | None = None  # only inside `held_writes`
        self._closing = False
        self._lost = False
        self._peername = peername
        try:
            protocol.connection_made(self)
        except Exception as exc:  # a bug: this connection goes (its protocol hears why), the node stays
            _log.exception("connection_made_failed")
            self._lose(exc)
        self._peername = None
        if not self._closing:
            loop.add_reader(self._fd, self._read_ready)

    # -- asyncio.Transport --------------------------------------------------------

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "socket":
            return self._sock
        if name == "peername" and self._peername is not None:
            return self._peername
        if name == "peername" and not self._lost:
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        """The bytes the client has not taken yet (not those held: they go out at once)."""
        return len(self._buffer) if self._buffer is not None else 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._buffer is not None:  # earlier bytes wait: these go after them
            self._buffer += data
        elif self._held is not None:
            self._held += data
        elif _holding is not None:
            self._held = bytearray(data)
            _holding.append(self)
        else:
            self._send(data)

    def close(self) -> None:
        """Stop reading; once the buffer (and what is held) is written, close."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._buffer is None and self._held is None:
            self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    # -- the loop's callbacks -----------------------------------------------------

    def _attempt(self, operation: Callable[[Any], Any], argument: object) -> Any:
        """`operation(argument)` on the socket: None if it would block; on an error the
        connection is lost (with that error) and None is returned."""
        try:
            return operation(argument)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._lose(exc)
            return None

    def _read_ready(self) -> None:
        data = self._attempt(self._sock.recv, READ_SIZE)
        if data is None:
            return
        if data:
            try:
                self._protocol.data_received(data)
            except Exception as exc:  # a bug: this connection goes (its protocol hears why), the node stays
                _log.exception("data_received_failed")
                self._lose(exc)
        elif self._protocol.eof_received():  # the client closed its side; the protocol keeps ours open
            self._loop.remove_reader(self._fd)
        else:
            self.close()

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        """Send what the socket takes now; the rest waits in the buffer until it is
        writable. A closing transport whose bytes are all sent is closed."""
        sent = self._attempt(self._sock.send, data)
        if self._lost:
            return
        sent = sent or 0  # None: it would block
        if sent < len(data):
            self._buffer = bytearray(memoryview(data)[sent:])
            self._loop.add_writer(self._fd, self._write_ready)
        elif self._closing:
            self._lose(None)

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:  # None: lost meanwhile (`_lose` drops what is held)
            self._send(held)

    def _write_ready(self) -> None:
        buffer = self._buffer
        assert buffer is not None
        sent = self._attempt(self._sock.send, buffer)
        if sent is None:
            return
        del buffer[:sent]
        if not buffer:
            self._buffer = None
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._lose(None)

    def _lose(self, exc: Exception | None) -> None:
        """Unregister and close the socket; the protocol hears of it once, on the next
        loop iteration."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._buffer = self._held = None
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


class Listener:
    """Listening sockets whose accepted connections get a `SocketTransport` and a
    protocol from `protocol_factory`; at most `batch` accepts per socket per loop
    iteration, so that a burst of clients cannot starve the connections already open."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.Protocol],
        batch: int,
    ) -> None:
        self._loop = loop
        self.sockets = sockets
        self._factory = protocol_factory
        self._batch = batch
        self._paused: dict[socket.socket, asyncio.TimerHandle] = {}
        self._closed = False
        for sock in sockets:
            loop.add_reader(sock, self._accept, sock)

    def close(self) -> None:
        """Stop accepting (connections already accepted are left open)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if sock in self._paused:
                self._paused.pop(sock).cancel()
            else:
                self._loop.remove_reader(sock)
            sock.close()

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(self._batch):
            try:
                sock, addr = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client gave up while queued
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                _log.warning("accept_failed", error=str(exc), paused_seconds=ACCEPT_PAUSE)
                self._loop.remove_reader(listening)
                self._paused[listening] = self._loop.call_later(ACCEPT_PAUSE, self._resume, listening)
                return
            sock.setblocking(False)
            try:
                protocol = self._factory()
            except Exception:  # a bug: this client goes, the node stays
                _log.exception("protocol_factory_failed")
                sock.close()
                continue
            SocketTransport(self._loop, sock, protocol, addr)

    def _resume(self, listening: socket.socket) -> None:
        del self._paused[listening]
        self._loop.add_reader(listening, self._accept, listening)


def listening_sockets(host: str, port: int, *, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Non-blocking listening sockets on every address `host` resolves to (all of them
    for an empty host), as `loop.create_server` binds them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this host cannot use (IPv6 turned off): the others serve
                _log.warning("listen_family_unavailable", family=family.name, address=str(address))
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # an IPv4 address has its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") from exc
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets:
            raise OSError(f"no address of {host!r} can be listened on here")
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
