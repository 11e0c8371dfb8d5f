"""gRPC keepalive: what the channels send, the servers accept (issue 14, item 2).

The channels ping an idle connection (pkg/rpc.CHANNEL_OPTIONS); a server that does not
permit that answers with GOAWAY ENHANCE_YOUR_CALM "too_many_pings" after a few pings, which
grpc prints in the terminal of every idle chat client. These tests put a counting TCP
proxy between a real channel and a real server, read the HTTP/2 frame headers that pass,
and wait (bounded) for several keepalive pings: with the servers' options every ping is
acknowledged, no GOAWAY is sent and a call still works on the same connection.

Both option lists are used as they are except the two intervals, divided by the same
factor (30 s of keepalive would make a slow test), so what is tested is how the lists
relate: pings as often as the channel sends them, with no calls in flight, are fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from gim.pkg import rpc

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING, GOAWAY = 0x6, 0x7
ACK = 0x1
SCALE = 30  # 30 s of keepalive -> 1 s
INTERVALS = ("grpc.keepalive_time_ms", "grpc.http2.min_ping_interval_without_data_ms")
PINGS = 5  # keepalive periods the connection stays idle
WAIT = 60.0  # bound on everything that waits (the pings take about PINGS seconds)


def scaled(options: list[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(key, int(value) // SCALE if key in INTERVALS else value) for key, value in options]  # type: ignore[call-overload]


@dataclasses.dataclass
class Wire:
    """What a proxy saw: connections accepted, HTTP/2 frames of interest per direction."""

    connections: int = 0
    client_pings: int = 0
    server_ping_acks: int = 0
    goaways: list[bytes] = dataclasses.field(default_factory=list)


class FrameCounter:
    """Reads HTTP/2 frame headers out of one direction of a byte stream."""

    def __init__(self, wire: Wire, from_client: bool) -> None:
        self.wire = wire
        self.from_client = from_client
        self.buffer = b""
        self.preface = len(PREFACE) if from_client else 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.preface:
            skipped = min(self.preface, len(self.buffer))
            self.buffer, self.preface = self.buffer[skipped:], self.preface - skipped
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags, payload = self.buffer[3], self.buffer[4], self.buffer[9 : 9 + length]
            self.buffer = self.buffer[9 + length :]
            if kind == PING and self.from_client and not flags & ACK:
                self.wire.client_pings += 1
            elif kind == PING and not self.from_client and flags & ACK:
                self.wire.server_ping_acks += 1
            elif kind == GOAWAY:
                self.wire.goaways.append(payload[8:])  # after last-stream-id and error code: debug data


@contextlib.asynccontextmanager
async def counting_proxy(upstream_port: int) -> AsyncIterator[tuple[int, Wire]]:
    wire = Wire()
    pumps: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: FrameCounter) -> None:
        try:
            while data := await reader.read(65536):
                counter.feed(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wire.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        for task in (
            pump(reader, up_writer, FrameCounter(wire, from_client=True)),
            pump(up_reader, writer, FrameCounter(wire, from_client=False)),
        ):
            pumps.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], wire
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def echo(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A server built like every gim server (rpc.new_server) with one echo method."""
    server = rpc.new_server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("gimtest.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    port = rpc.bind(server, "127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def idle_with_keepalive(monkeypatch: pytest.MonkeyPatch, server_options: list[tuple[str, object]]) -> Wire:
    """One call, then idle until PINGS pings were acknowledged or the server sent GOAWAY
    (bounded by WAIT), then another call; returns what the proxy saw."""
    monkeypatch.setattr(rpc, "SERVER_OPTIONS", scaled(server_options))
    async with echo_server() as port, counting_proxy(port) as (proxy_port, wire):
        channel = aio.insecure_channel(f"127.0.0.1:{proxy_port}", options=scaled(rpc.CHANNEL_OPTIONS))
        try:
            call = channel.unary_unary("/gimtest.Echo/Echo")
            assert await call(b"first", timeout=10) == b"first"
            async with asyncio.timeout(WAIT):
                while wire.server_ping_acks < PINGS and not wire.goaways:
                    # woken by any connectivity change, else every keepalive period at most
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await channel.wait_for_state_change(channel.get_state())
            if not wire.goaways:
                assert await call(b"again", timeout=10) == b"again"
        finally:
            await channel.close()
    return wire


async def test_idle_channel_pings_are_welcome(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = await idle_with_keepalive(monkeypatch, rpc.SERVER_OPTIONS)
    assert wire.goaways == [], f"the server sent GOAWAY: {wire.goaways}"
    assert wire.client_pings >= PINGS and wire.server_ping_acks >= PINGS
    assert wire.connections == 1, "the call after the idle period used the same connection"


async def test_a_server_without_the_keepalive_options_sends_too_many_pings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy sees what the issue describes when the server options leave keepalive at
    gRPC's defaults (as before the fix): the frame counting above can fail."""
    defaults = [(k, v) for k, v in rpc.SERVER_OPTIONS if "ping" not in k and "keepalive" not in k]
    wire = await idle_with_keepalive(monkeypatch, defaults)
    assert any(b"too_many_pings" in debug for debug in wire.goaways), wire


def test_server_accepts_pings_as_often_as_channels_send_them() -> None:
    channel, server = dict(rpc.CHANNEL_OPTIONS), dict(rpc.SERVER_OPTIONS)
    assert server["grpc.keepalive_permit_without_calls"] == 1 == channel["grpc.keepalive_permit_without_calls"]
    assert int(server["grpc.http2.min_ping_interval_without_data_ms"]) <= int(channel["grpc.keepalive_time_ms"])
