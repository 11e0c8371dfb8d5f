"""Hostile or broken clients on the long connection: each gets a named error where the
protocol allows one and is closed where it must be; a bystander keeps working and
nothing is logged as a crash. (Zero/oversize frames, packets before sign-in, a wrong
token and bad packet data after sign-in are in test_bad_input.py.)"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from gim.client.connection import LongConnection
from gim.pkg import rpc
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx

if TYPE_CHECKING:
    from typing import Any

    from gimtest.callables import ConnectNodes
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


def sign_in_body(creds) -> bytes:  # type: ignore[no-untyped-def]
    data = cx.SignInInput(user_id=creds.user_id, device_id=creds.device_id, token=creds.token).SerializeToString()
    return cx.Input(type=cx.PT_SIGN_IN, request_id=1, data=data).SerializeToString()


async def errors_then_closed(conn: LongConnection, code: Code) -> cx.Output:
    out = await conn.next_push()
    assert out.code == code and out.message
    await asyncio.wait_for(conn.closed.wait(), 10)
    return out


@pytest.fixture
async def bystander(cluster: Cluster, conns: Conns) -> None:
    """A signed-in connection that must keep working whatever the test does to others."""
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    yield conn
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    assert not conn.closed.is_set()


async def test_random_bytes_are_an_error_then_closed(conns, bystander, crashes) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    for _ in range(5):
        conn = await conns.open("tcp")
        await conn.write_raw(b"\xff" + rng.randbytes(300))  # a length prefix over the maximum
        await errors_then_closed(conn, Code.BAD_REQUEST)
    for _ in range(5):  # short random frames: not an Input, or not signed in
        conn = await conns.open("tcp")
        await conn.write_raw(frame(rng.randbytes(rng.randrange(1, 40))))
        out = await conn.next_push()
        assert out.code in (Code.BAD_REQUEST, Code.UNAUTHORIZED)
        await asyncio.wait_for(conn.closed.wait(), 10)
    assert crashes() == []


async def test_truncated_frame_then_eof_is_just_a_close(cluster, conns, bystander, crashes) -> None:  # type: ignore[no-untyped-def]
    before = cluster.connect.stats()["connections"]
    conn = await conns.open("tcp")
    await conn.write_raw(b"\x00\x40" + b"\x08\x01")  # 64 bytes announced, 2 sent
    await conn.close()
    await cluster.connect.settle()
    assert cluster.connect.stats()["connections"] == before
    assert crashes() == []


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_unknown_package_type_is_10001_and_the_connection_stays(
    cluster, conns, bystander, crashes, transport
) -> None:  # type: ignore[no-untyped-def]
    (creds,) = await cluster.new_user()
    conn = await conns.open(transport, creds)
    out = await conn.request(99)
    assert (out.type, out.code) == (99, Code.BAD_REQUEST)
    out = await conn.request(cx.PT_UNKNOWN)
    assert out.code == Code.BAD_REQUEST
    out = await conn.request(cx.PT_SIGN_IN, b"")
    assert out.code == Code.BAD_REQUEST, "a second sign-in is refused"
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    assert crashes() == []


async def test_invalid_protobuf_over_websocket_is_an_error_then_closed(conns, bystander, crashes) -> None:  # type: ignore[no-untyped-def]
    conn = await conns.open("ws")
    await conn.ws.send(b"\xff\xff\xff")
    await errors_then_closed(conn, Code.BAD_REQUEST)
    assert crashes() == []


async def test_websocket_text_frame_is_an_error_then_closed(cluster, conns, bystander, crashes) -> None:  # type: ignore[no-untyped-def]
    (creds,) = await cluster.new_user()
    conn = await conns.open("ws", creds)
    await conn.ws.send("hello")
    out = await errors_then_closed(conn, Code.BAD_REQUEST)
    assert "text" in out.message
    assert crashes() == []


async def test_websocket_upgrade_on_another_path_is_404(cluster, bystander) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(f"ws://127.0.0.1:{cluster.connect.ws_port}/chat"):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_logic_down_during_sign_in_is_answered_with_a_code(
    cluster: Cluster, conns: Conns, connect_node: ConnectNodes, transport: str
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"  # bound, not listening: refused
        node = await connect_node(logic_int_addr=dead, rpc_timeout=2.0)
        (creds,) = await cluster.new_user()
        conn = await conns.open(transport, server=node)
        out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
    assert (out.type, out.code) == (cx.PT_SIGN_IN, Code.BAD_REQUEST) and "unavailable" in out.message
    await asyncio.wait_for(conn.closed.wait(), 10)


async def test_flooding_client_is_disconnected(cluster, conns, bystander, crashes) -> None:  # type: ignore[no-untyped-def]
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    sync = frame(
        cx.Input(type=cx.PT_SYNC, request_id=5, data=cx.SyncInput(seq=0).SerializeToString()).SerializeToString()
    )
    await conn.write_raw(sync * 2000)  # far more than are served before the next read
    await asyncio.wait_for(conn.closed.wait(), 10)
    refusals = []
    while not conn.pushes.empty():
        refusals.append(await conn.next_push())
    assert any(o.code == Code.BAD_REQUEST and "too many" in o.message for o in refusals)
    assert crashes() == []


async def _never_reading_tcp(node, creds) -> asyncio.StreamWriter:  # type: ignore[no-untyped-def]
    """A signed-in TCP client with a tiny receive buffer that never reads after sign-in."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.tcp_port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(frame(sign_in_body(creds)))
    header = await reader.readexactly(2)
    out = cx.Output.FromString(await reader.readexactly(int.from_bytes(header, "big")))
    assert out.code == 0, out.message
    return writer


async def _never_reading_ws(node, creds):  # type: ignore[no-untyped-def]
    ws = await ws_connect(f"ws://127.0.0.1:{node.ws_port}/ws", compression=None, max_queue=1)
    await ws.send(sign_in_body(creds))
    assert cx.Output.FromString(await ws.recv()).code == 0
    return ws


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_client_that_never_reads_is_dropped_and_others_keep_receiving(
    cluster, conns, connect_node, logic_int, crashes, transport
) -> None:  # type: ignore[no-untyped-def]
    node = await connect_node(write_buffer_limit=64 * 1024, close_timeout=1.0)
    slow_creds, fast_creds = await cluster.new_user(devices=2)
    room = random.randrange(1, 1 << 50)
    slow = await (_never_reading_tcp if transport == "tcp" else _never_reading_ws)(node, slow_creds)
    slow_session = node.registry.get(slow_creds.device_id)
    subscribe = cx.Input(
        type=cx.PT_SUBSCRIBE_ROOM, request_id=2, data=cx.SubscribeRoomInput(room_id=room).SerializeToString()
    )
    slow_session.on_body(subscribe.SerializeToString())  # as if sent: its answer is never read anyway
    fast = await conns.open("tcp", fast_creds, server=node)
    out = await fast.request(cx.PT_SUBSCRIBE_ROOM, cx.SubscribeRoomInput(room_id=room).SerializeToString())
    assert out.code == 0
    await node.settle()
    assert slow_session.room_id == room
    content = cx.Text(text="x" * 50_000).SerializeToString()
    pushed = 0
    while not slow_session.closed and pushed < 400:  # bounded: 400 x 50 KB
        req = lx.PushRoomReq(room_id=room, message_type=cx.MT_TEXT, message_content=content)
        await rpc.call(logic_int.PushRoom, req, 10.0)
        pushed += 1
        assert (await fast.next_message()).message_content == content
    assert slow_session.closed, f"still open after {pushed} pushes of 50 KB"
    assert node.registry.get(slow_creds.device_id) is None
    await rpc.call(
        logic_int.PushRoom, lx.PushRoomReq(room_id=room, message_type=cx.MT_TEXT, message_content=b"ok"), 10.0
    )
    assert (await fast.next_message()).message_content == b"ok"
    slow.transport.abort()  # a never-reading client would not finish a closing handshake
    assert crashes() == []


async def test_closing_a_client_that_never_reads_aborts_after_close_timeout(
    cluster, conns, connect_node, crashes, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    node = await connect_node(close_timeout=0.2)
    (creds,) = await cluster.new_user()
    slow = await _never_reading_tcp(node, creds)
    session = node.registry.get(creds.device_id)
    protocol = session.transport
    transport = protocol._transport
    lost = asyncio.Event()
    connection_lost = type(protocol).connection_lost

    def record(self, exc: Exception | None) -> None:
        connection_lost(self, exc)
        if self is protocol:
            lost.set()

    monkeypatch.setattr(type(protocol), "connection_lost", record)
    message_send = cx.MessageSend(message=cx.Message(message_content=b"y" * 50_000)).SerializeToString()
    for _ in range(200):  # until the kernel buffers are full and asyncio holds the rest
        if transport.get_write_buffer_size() > 0:
            break
        session.push(message_send)
        await asyncio.sleep(0)  # let the loop try to write
    assert transport.get_write_buffer_size() > 0
    await conns.open("ws", creds, server=node)  # replaces (closes) the never-reading one
    await asyncio.wait_for(lost.wait(), 10)
    assert session.closed and session.replaced
    slow.transport.abort()
    assert crashes() == []


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_failed_ack_is_never_answered(
    cluster: Cluster, connect_node: ConnectNodes, conns: Conns, log_events: list[dict[str, Any]], transport: str
) -> None:
    """As in 2021: clients take every downstream PT_MESSAGE for a push, so an ack that
    logic refuses (or that does not parse) is logged, once per kind, not answered."""
    (creds,) = await cluster.new_user()
    node = await connect_node()  # its own summary of failures
    conn = await conns.open(transport, creds, server=node)
    for request_id in (7, 8, 9):
        await conn.send(cx.PT_MESSAGE, cx.MessageACK(device_ack=-1).SerializeToString(), request_id)
    await conn.send(cx.PT_MESSAGE, b"\xff\xff", 10)
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    await node.settle()  # acks go to logic in the background: they are done now
    assert conn.pushes.empty(), conn.pushes.get_nowait()
    dropped = [e for e in log_events if e["event"] == "ack_dropped"]
    assert sorted(e["kind"] for e in dropped) == ["10001", "PacketError"], dropped
