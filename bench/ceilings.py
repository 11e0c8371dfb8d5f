"""The ceilings a scenario is compared with, measured in the same run.

- rpc: a trivial grpc.aio unary echo server in its own process; calls/s at the
  scenario's client concurrency and request size.
- socket: a minimal asyncio server in its own process that answers every packet with an
  empty Output of the same type (so fleets sign in as usual) and, told to by a control
  connection, writes K encoded frames to every other connection at a given rate.
- db: multi-row inserts of message rows shaped like the scenario's into its database.

`python -P -m gim.bench.ceilings rpc|socket PORT` runs a server (used by `ceiling_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from gim.bench import messages
from gim.bench.services import Storage
from gim.pkg import redis_client
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FrameDecoder, encode_frame

ECHO_METHOD = "/bench.Echo/Echo"
_GO = struct.Struct(">4sqd")  # b"GO!!", count, rate (frames per second)


# -- servers (child processes) --------------------------------------------------------


async def _echo(request: bytes, _context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve_rpc(port: int) -> None:
    server = aio.server()
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_terminated()
    await server.stop(0)


class _SocketPeer(asyncio.Protocol):
    def __init__(self, peers: set[asyncio.Transport]) -> None:
        self.peers = peers
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peers.add(transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for body in self.decoder.feed(data):
            if body.startswith(b"GO!!"):
                self.peers.discard(self.transport)
                _, count, rate = _GO.unpack(body)
                asyncio.get_running_loop().create_task(self._broadcast(count, rate))
                continue
            packet = cx.Input.FromString(body)
            reply = cx.Output(type=packet.type, request_id=packet.request_id).SerializeToString()
            self.transport.write(encode_frame(reply))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.peers.discard(self.transport)

    async def _broadcast(self, count: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(1, count + 1):
            await asyncio.sleep(max(0.0, start + (k - 1) / rate - loop.time()))
            message = cx.Message(receiver_type=cx.RT_ROOM, seq=k, message_content=messages.content(k))
            body = cx.Output(type=cx.PT_MESSAGE, data=cx.MessageSend(message=message).SerializeToString())
            frame = encode_frame(body.SerializeToString())
            for peer in self.peers:
                peer.write(frame)
        assert self.transport is not None
        self.transport.write(encode_frame(b"done"))


async def serve_socket(port: int) -> None:
    peers: set[asyncio.Transport] = set()
    server = await asyncio.get_running_loop().create_server(lambda: _SocketPeer(peers), "127.0.0.1", port, backlog=4096)
    await _until_terminated()
    server.close()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- the bench side ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ceiling_server(kind: str) -> AsyncIterator[int]:
    """Run the `kind` server ("rpc" or "socket") in a child process; yields its port."""
    port = redis_client.free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "gim.bench.ceilings", kind, str(port), stdin=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(30):
            while not redis_client.port_open("127.0.0.1", port):
                if process.returncode is not None:
                    raise RuntimeError(f"{kind} ceiling server exited with {process.returncode}")
                await asyncio.sleep(0.05)
        yield port
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()


async def rpc_calls_per_second(calls: int, concurrency: int, request_size: int, timeout: float = 60) -> float:
    """Echo calls/s against the rpc ceiling server."""
    async with ceiling_server("rpc") as port:
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            echo: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
            payload = b"x" * request_size
            await echo(payload, timeout=10)
            remaining = iter(range(calls))

            async def caller() -> None:
                for _ in remaining:
                    await echo(payload, timeout=10)

            start = time.perf_counter()
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(caller() for _ in range(concurrency)))
            return calls / (time.perf_counter() - start)
        finally:
            await channel.close()


async def socket_go(port: int, count: int, rate: float) -> asyncio.Future[None]:
    """Tell the socket ceiling server to start its broadcast; the future ends with it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    class Control(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            if not done.done():
                done.set_result(None)

    transport, _ = await loop.create_connection(Control, "127.0.0.1", port)
    transport.write(encode_frame(_GO.pack(b"GO!!", count, rate)))
    done.add_done_callback(lambda _f: transport.close())
    return done


async def db_rows_per_second(
    store: Storage, inserts: int, rows_per_insert: int, concurrency: int, content_size: int = 24, timeout: float = 60
) -> float:
    """Multi-row inserts of message rows (one transaction each) into the scenario's database."""
    base = 10**12 + int(time.time())  # user ids no scenario uses
    common = {
        "request_id": 0,
        "sender_type": cx.ST_USER,
        "sender_id": base,
        "receiver_type": cx.RT_GROUP,
        "receiver_id": 1,
        "to_user_ids": "",
        "type": cx.MT_CUSTOM,
        "content": b"c" * content_size,
        "send_time": 0,
        "status": 1,
    }
    remaining = iter(range(1, inserts + 1))

    async def inserter() -> None:
        for seq in remaining:
            by_shard: dict[object, list[dict[str, object]]] = defaultdict(list)
            for member in range(rows_per_insert):
                user_id = base + member
                by_shard[store.shards.table_for(user_id)].append({"user_id": user_id, "seq": seq, **common})
            async with store.engine.begin() as conn:
                for table, rows in by_shard.items():
                    await conn.execute(table.insert(), rows)  # type: ignore[attr-defined]  # one multi-row INSERT (insertmanyvalues)

    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(inserter() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        if store.target is not None:  # a database in use: take the rows out again
            async with store.engine.begin() as conn:
                for table in store.shards.tables:
                    await conn.execute(table.delete().where(table.c.user_id >= base))
    return inserts * rows_per_insert / elapsed


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    serve = {"rpc": serve_rpc, "socket": serve_socket}[kind]
    asyncio.run(serve(port))


if __name__ == "__main__":
    main()
