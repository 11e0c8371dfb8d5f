"""The load generator's devices retry a failed connect or sign-in as the SDK does: a
refused connect, a reset connection and a sign-in answered 10001 are tried again at the
next endpoint; a 10000 is not; each device is counted once, signed in or failed."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

from gim.bench.fleet import Fleet
from gim.bench.worker import _open
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FrameDecoder, encode_frame
from gim.pkg.protocol.packets import parse_input


class SignInServer:
    """Answers sign-ins by token: "reset-once" resets the device's first connection,
    "busy" is always answered 10001, "bad" 10000, anything else 0; a WebSocket handshake
    gets HTTP 503."""

    def __init__(self) -> None:
        self.attempts: Counter[int] = Counter()  # device id -> sign-ins received

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            if data.startswith(b"GET "):  # a WebSocket handshake: as a node stopping answers it
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                break
            for body in decoder.feed(data):
                packet = parse_input(body)
                if packet.type != cx.PT_SIGN_IN:
                    continue  # the sync a client sends once signed in
                sign_in = cx.SignInInput.FromString(packet.data)
                self.attempts[sign_in.device_id] += 1
                if sign_in.token == "reset-once" and self.attempts[sign_in.device_id] == 1:
                    writer.transport.abort()
                    return
                code = {"busy": Code.BAD_REQUEST, "bad": Code.UNAUTHORIZED}.get(sign_in.token, 0)
                out = cx.Output(type=cx.PT_SIGN_IN, request_id=packet.request_id, code=code, message="no")
                writer.write(encode_frame(out.SerializeToString()))
        writer.close()


def closed_port() -> int:
    """A loopback port nothing listens on (connects to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_failed_sign_ins_are_retried_and_each_device_counted_once() -> None:
    fake = SignInServer()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    live = server.sockets[0].getsockname()[1]
    fleet = Fleet()
    # device i starts at endpoint i % 2 and moves to the next one on each retry
    closed = closed_port()
    endpoints = [
        ["127.0.0.1", closed, "127.0.0.1", closed, f"ws://127.0.0.1:{closed}/ws", ""],
        ["127.0.0.1", live, "127.0.0.1", live, f"ws://127.0.0.1:{live}/ws", ""],
    ]
    devices = [
        [1, 1, "ok"],  # refused at the closed port, then signed in: 1 retry
        [2, 2, "reset-once"],  # reset, refused, signed in: 2 retries
        [3, 3, "busy"],  # refused, 10001, refused: failed after 3 attempts
        [4, 4, "bad"],  # 10000 at its first attempt: not retried
        [5, 5, "ok"],  # over WebSocket: refused, 503, refused: failed after 3 attempts
    ]
    cmd = {
        "devices": devices, "endpoints": endpoints, "ws_every": 5,
        "retry": {"attempts": 3, "backoff_initial": 0.01},
    }  # fmt: skip
    try:
        answer, clients = await _open(fleet, {"op": "open", **cmd})
        assert [c.device.device_id for c in clients] == [1, 2]
        assert (answer["signed"], answer["failed"], answer["retries"]) == (2, 3, 7)
        assert answer["reasons"] == {"ConnectionRefusedError": 2, "10000 no": 1}
        retried = answer["retry_reasons"]
        assert sum(retried.values()) == 7 and retried["10001 no"] == 1 and retried["WsClosed"] == 1
        assert fake.attempts == {1: 1, 2: 2, 3: 1, 4: 1}
        assert fleet.clients == clients  # the failed attempts' clients are not kept
    finally:
        fleet.close()
        server.close()
        await server.wait_closed()
