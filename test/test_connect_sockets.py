"""Connect's own TCP transport and listener (internal/connect/sockets.py) on real
loopback sockets: bytes written in order through a client that reads late, close after
the buffer, one connection_lost, held writes sent once a connection, batches of accepts,
and a pause when out of descriptors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

import pytest

from gim.internal.connect.sockets import Listener, SocketTransport, held_writes, listening_sockets
from gimtest.sockets import CountedSends, count_sends
from gimtest.waiting import until


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: SocketTransport | None = None
        self.received = bytearray()
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, SocketTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Server:
    def __init__(self, batch: int = 64) -> None:
        self.protocols: list[Recorder] = []
        self.clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.listener = Listener(
            asyncio.get_running_loop(),
            listening_sockets("127.0.0.1", 0, backlog=64, reuse_port=False),
            self._made,
            batch=batch,
        )
        self.port = self.listener.sockets[0].getsockname()[1]

    def _made(self) -> Recorder:
        self.protocols.append(Recorder())
        return self.protocols[-1]


@pytest.fixture
async def server() -> Any:
    srv = Server()
    yield srv
    srv.listener.close()
    for _, writer in srv.clients:
        writer.close()
    for p in srv.protocols:
        if p.transport is not None:
            p.transport.abort()


async def _client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_bytes_both_ways_and_a_client_that_reads_late_gets_everything_in_order(server: Server) -> None:
    reader, writer = await _client(server.port)
    await until(lambda: len(server.protocols) == 1)
    proto = server.protocols[0]
    assert proto.transport is not None
    writer.write(b"hello")
    await until(lambda: bytes(proto.received) == b"hello")
    # More than the kernel's socket buffers take while the client reads nothing: the
    # rest waits in the transport's buffer, written as the client reads.
    chunks = [bytes([i % 251]) * 65_536 for i in range(256)]  # 16 MiB
    for chunk in chunks:
        proto.transport.write(chunk)
    assert proto.transport.get_write_buffer_size() > 0
    got = await asyncio.wait_for(reader.readexactly(sum(map(len, chunks))), 30)
    assert got == b"".join(chunks)
    await until(lambda: proto.transport is not None and proto.transport.get_write_buffer_size() == 0)
    writer.close()
    await until(lambda: proto.lost == [None], "the client's close ends the connection once, without an error")


async def test_close_writes_the_buffer_first_then_the_client_sees_the_end(server: Server) -> None:
    reader, writer = await _client(server.port)
    await until(lambda: len(server.protocols) == 1)
    proto = server.protocols[0]
    assert proto.transport is not None
    payload = os.urandom(3 * 1024 * 1024)
    proto.transport.write(payload)
    proto.transport.close()
    assert proto.transport.is_closing()
    proto.transport.write(b"after close")  # dropped
    got = await asyncio.wait_for(reader.read(), 30)  # to EOF
    assert got == payload
    await until(lambda: proto.lost == [None])
    proto.transport.abort()  # after the end: nothing more happens
    await asyncio.sleep(0)
    assert proto.lost == [None]
    writer.close()


async def test_abort_drops_the_buffer_and_a_reset_client_is_reported_once(server: Server) -> None:
    _, writer = await _client(server.port)
    await until(lambda: len(server.protocols) == 1)
    proto = server.protocols[0]
    assert proto.transport is not None
    proto.transport.write(os.urandom(8 * 1024 * 1024))
    proto.transport.abort()
    assert proto.transport.get_write_buffer_size() == 0
    await until(lambda: proto.lost == [None])
    writer.close()

    # a client that resets its connection (SO_LINGER 0): connection_lost with the error
    sock = socket.create_connection(("127.0.0.1", server.port))
    await until(lambda: len(server.protocols) == 2)
    second = server.protocols[1]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    await until(lambda: len(second.lost) == 1)
    assert second.lost[0] is None or isinstance(second.lost[0], ConnectionResetError)


async def _connected(server: Server, count: int) -> list[tuple[asyncio.StreamReader, Recorder, CountedSends]]:
    clients = [await _client(server.port) for _ in range(count)]
    server.clients = clients  # the writers stay open
    await until(lambda: len(server.protocols) == count)
    found = []
    for (reader, _), proto in zip(clients, server.protocols, strict=True):
        assert proto.transport is not None
        counted = count_sends(proto.transport)
        found.append((reader, proto, counted))
    return found


async def test_held_writes_go_out_at_the_end_of_the_block_in_one_send_a_connection(server: Server) -> None:
    (reader_a, a, sends_a), (reader_b, b, sends_b) = await _connected(server, 2)
    assert a.transport is not None and b.transport is not None
    with held_writes():
        for i in range(5):
            a.transport.write(b"a%d," % i)
            b.transport.write(b"b%d," % i)
            with held_writes():  # nested: part of the outer block
                a.transport.write(b"n%d," % i)
        assert (sends_a.sends, sends_b.sends) == (0, 0)
        assert a.transport.get_write_buffer_size() == 0, "held bytes are not a slow client's backlog"
    assert (sends_a.sends, sends_b.sends) == (1, 1)
    assert await reader_a.readexactly(30) == b"".join(b"a%d,n%d," % (i, i) for i in range(5))
    assert await reader_b.readexactly(15) == b"b0,b1,b2,b3,b4,"
    a.transport.write(b"later")  # outside a block: at once
    assert sends_a.sends == 2
    assert await reader_a.readexactly(5) == b"later"


async def test_held_writes_after_a_backlog_close_and_abort_inside_a_block(server: Server) -> None:
    (reader_a, a, _), (reader_b, b, _), (reader_c, c, _) = await _connected(server, 3)
    assert a.transport is not None and b.transport is not None and c.transport is not None
    backlog = os.urandom(8 * 1024 * 1024)  # more than the socket takes: a buffer
    a.transport.write(backlog)
    assert a.transport.get_write_buffer_size() > 0
    with held_writes():
        a.transport.write(b"after the backlog")
        b.transport.write(b"last words")
        b.transport.close()  # closes once what is held is written
        c.transport.write(b"never sent")
        c.transport.abort()
    assert await asyncio.wait_for(reader_a.readexactly(len(backlog) + 17), 30) == backlog + b"after the backlog"
    assert await asyncio.wait_for(reader_b.read(), 30) == b"last words"  # then the end
    assert await asyncio.wait_for(reader_c.read(), 30) == b""
    await until(lambda: b.lost == [None] and c.lost == [None])


async def test_the_peer_name_is_the_clients_address(server: Server) -> None:
    _, writer = await _client(server.port)
    await until(lambda: len(server.protocols) == 1)
    transport = server.protocols[0].transport
    assert transport is not None
    assert transport.get_extra_info("peername") == writer.get_extra_info("sockname")
    assert isinstance(transport.get_extra_info("socket"), socket.socket)
    assert transport.get_extra_info("sockname", "none") == "none"
    writer.close()


async def test_a_burst_is_accepted_in_batches_and_close_stops_accepting() -> None:
    srv = Server(batch=2)
    try:
        clients = [await _client(srv.port) for _ in range(7)]
        await until(lambda: len(srv.protocols) == 7, "batches of 2 accept all 7 over several iterations")
        srv.listener.close()
        with pytest.raises(OSError):
            await _client(srv.port)
        for _, writer in clients:
            writer.close()
        await until(lambda: all(p.lost == [None] for p in srv.protocols))
    finally:
        srv.listener.close()
    for _, writer in srv.clients:
        writer.close()


# Run in a process of its own: lowering the descriptor limit would fail whatever else
# this test process opens meanwhile.
OUT_OF_DESCRIPTORS = """
import asyncio, json, os, resource, socket, structlog
from gim.internal.connect import sockets

async def main():
    sockets.ACCEPT_PAUSE = 0.05
    accepted = []
    listening = sockets.listening_sockets("127.0.0.1", 0, backlog=64, reuse_port=False)
    def protocol():
        accepted.append(1)
        return asyncio.Protocol()

    listener = sockets.Listener(asyncio.get_running_loop(), listening, protocol, batch=64)
    port = listening[0].getsockname()[1]
    clients = [socket.socket() for _ in range(4)]  # their descriptors exist before the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with structlog.testing.capture_logs() as events:
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no room for one more
        for client in clients:
            client.connect(("127.0.0.1", port))  # the kernel queues them
        async with asyncio.timeout(10):
            while not any(e["event"] == "accept_failed" for e in events):
                await asyncio.sleep(0.005)
        during = len(accepted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        async with asyncio.timeout(10):
            while len(accepted) < len(clients):
                await asyncio.sleep(0.005)
    listener.close()
    print(json.dumps({"during": during, "after": len(accepted), "events": [e for e in events if e["event"] == "accept_failed"]}))

asyncio.run(main())
"""


async def test_out_of_descriptors_pauses_accepting_and_then_accepts_the_rest() -> None:
    """Out of file descriptors, accept() fails with EMFILE: the listener logs it and
    pauses that socket instead of failing every accept, then takes the queued clients."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OUT_OF_DESCRIPTORS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["during"] == 0, "no descriptor left: nothing accepted"
    assert result["after"] == 4, "all are accepted once descriptors are free"
    assert "Too many open files" in result["events"][0]["error"]
    assert result["events"][0]["paused_seconds"] == 0.05


class Faulty(Recorder):
    """A protocol with a bug where asked (`fail_in`), or that keeps its side open at EOF."""

    def __init__(self, fail_in: str = "", keep_open: bool = False) -> None:
        super().__init__()
        self.fail_in = fail_in
        self.keep_open = keep_open
        self.eofs = 0
        self.peername: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peername = transport.get_extra_info("peername")
        if self.fail_in == "connection_made":
            raise RuntimeError("bug in connection_made")

    def data_received(self, data: bytes) -> None:
        if self.fail_in == "data_received":
            raise RuntimeError("bug in data_received")
        super().data_received(data)

    def eof_received(self) -> bool:
        self.eofs += 1
        return self.keep_open


async def _listening(protocols: list[Any], make: Any) -> Listener:
    def factory() -> asyncio.Protocol:
        protocols.append(make())
        return protocols[-1]

    return Listener(
        asyncio.get_running_loop(), listening_sockets("127.0.0.1", 0, backlog=8, reuse_port=False), factory, 8
    )


async def test_a_protocol_bug_closes_its_connection_only(log_events: list[dict[str, Any]]) -> None:
    """A raise in connection_made or data_received closes that connection (its protocol
    told why); a raise in the protocol factory drops that client; the listener goes on."""
    protocols: list[Faulty] = []
    kinds = iter(["connection_made", "data_received", "factory", ""])

    def make() -> Faulty:
        kind = next(kinds)
        if kind == "factory":
            raise RuntimeError("bug in the factory")
        return Faulty(fail_in=kind)

    listener = await _listening(protocols, make)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await _client(port)  # connection_made raises
        assert await asyncio.wait_for(reader.read(), 10) == b"", "closed at once"
        await until(lambda: len(protocols) == 1 and len(protocols[0].lost) == 1)
        assert isinstance(protocols[0].lost[0], RuntimeError)
        writer.close()

        reader, writer = await _client(port)  # data_received raises
        writer.write(b"x")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await until(lambda: len(protocols) == 2 and len(protocols[1].lost) == 1)
        assert isinstance(protocols[1].lost[0], RuntimeError)
        writer.close()

        reader, writer = await _client(port)  # the factory raises
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()

        reader, writer = await _client(port)  # a sound one
        writer.write(b"fine")
        await until(lambda: len(protocols) == 3 and bytes(protocols[2].received) == b"fine")
        assert protocols[2].peername == writer.get_extra_info("sockname"), "the address accept() gave"
        writer.close()
        events = [e["event"] for e in log_events]
        assert {"connection_made_failed", "data_received_failed", "protocol_factory_failed"} <= set(events)
    finally:
        listener.close()
        for p in protocols:
            if p.transport is not None:
                p.transport.abort()


async def test_a_protocol_that_keeps_its_side_open_at_eof_is_not_woken_again() -> None:
    protocols: list[Faulty] = []
    listener = await _listening(protocols, lambda: Faulty(keep_open=True))
    try:
        reader, writer = await _client(listener.sockets[0].getsockname()[1])
        await until(lambda: len(protocols) == 1)
        writer.write_eof()  # the client's side ends; the server may still write
        await until(lambda: protocols[0].eofs == 1)
        for _ in range(50):  # loop iterations in which a readable EOF would be reported again
            await asyncio.sleep(0)
        assert protocols[0].eofs == 1
        transport = protocols[0].transport
        assert transport is not None
        transport.write(b"still here")
        transport.close()
        assert await asyncio.wait_for(reader.read(), 10) == b"still here"
        await until(lambda: protocols[0].lost == [None])
        writer.close()
    finally:
        listener.close()


def test_a_port_in_use_is_named_in_the_error() -> None:
    taken = listening_sockets("127.0.0.1", 0, backlog=8, reuse_port=False)
    port = taken[0].getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"cannot listen on \\('127.0.0.1', {port}\\)"):
            listening_sockets("127.0.0.1", port, backlog=8, reuse_port=False)
        shared = listening_sockets("127.0.0.1", 0, backlog=8, reuse_port=True)
        again = listening_sockets("127.0.0.1", shared[0].getsockname()[1], backlog=8, reuse_port=True)
        assert again[0].getsockname() == shared[0].getsockname(), "workers share a port with SO_REUSEPORT"
        for sock in (*shared, *again):
            sock.close()
    finally:
        for sock in taken:
            sock.close()
