"""Connect's own TCP transport and listener (internal/connect/sockets.py) on real
loopback sockets: bytes written in order through a client that reads late, close after
the buffer, one connection_lost, batches of accepts, and a pause when out of descriptors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

import pytest

from gim.internal.connect.sockets import Listener, SocketTransport, listening_sockets
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


# Run in a process of its own: lowering the descriptor limit would fail whatever else
# this test process opens meanwhile.
OUT_OF_DESCRIPTORS = """
import asyncio, json, os, resource, socket, structlog
from gim.internal.connect import sockets

async def main():
    sockets.ACCEPT_PAUSE = 0.05
    accepted = []
    listening = sockets.listening_sockets("127.0.0.1", 0, backlog=64, reuse_port=False)
    listener = sockets.Listener(asyncio.get_running_loop(), listening, lambda: asyncio.Protocol(), batch=64)
    port = listening[0].getsockname()[1]
    original = sockets.SocketTransport.__init__
    def made(self, loop, sock, protocol):
        accepted.append(sock.fileno())
        original(self, loop, sock, protocol)
    sockets.SocketTransport.__init__ = made
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
