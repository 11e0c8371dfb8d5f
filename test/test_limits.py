"""Limits (issue 12 item 5), each answered as docs/security.md "Limits" says: rates per
user and per address (RESOURCE_EXHAUSTED, others unaffected), the group size under
concurrent adds, kept and replayed room bytes, the cap on connections not signed in per
address, and the sign-in deadline for a connection queued behind its device's sign-in."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from grpc import aio
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from gim.client.api import GimApi
from gim.client.connection import TcpConnection
from gim.internal.connect.server import ConnectServer
from gim.internal.logic.server import LogicServer
from gim.internal.logic.values import BUSINESS, Outgoing, ReceiverType
from gim.pkg import rpc
from gim.pkg.config import ConnectConfig, LogicConfig
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.schema import SEQ_OBJECT_ROOM
from gim.pkg.schema import seq as seq_table
from gimtest.waiting import until


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


async def refused(call: Awaitable[object]) -> str:
    """The message of a RESOURCE_EXHAUSTED refusal (anything else fails the test)."""
    with pytest.raises(aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
    return info.value.details() or ""


class LogicNode:
    def __init__(self, server: LogicServer, api: GimApi) -> None:
        self.server = server
        self.api = api


@pytest.fixture
async def logic_node(cluster: Any) -> AsyncIterator[Callable[..., Awaitable[LogicNode]]]:
    """logic_node(**config) -> a second logic node with these settings (loopback not
    exempt), beside the cluster's business. Its per-user counters are of fresh users."""
    started: list[LogicNode] = []
    storage = cluster.storage

    async def make(**keys: Any) -> LogicNode:
        cfg = LogicConfig(
            database_url=storage.database_url,
            redis_url=storage.redis_url,
            redis_prefix=storage.redis_prefix,
            grpc_status=storage.status_mode,
            message_shards=4,
            int_listen="127.0.0.1:0",
            ext_listen="127.0.0.1:0",
            business_int_addr=_addr(cluster.business.int_port),
            **{"limit_exempt": "", **keys},
        )
        server = LogicServer.from_config(cfg)
        await server.start()
        node = LogicNode(server, GimApi(_addr(server.ext_port), _addr(cluster.business.ext_port)))
        started.append(node)
        return node

    yield make
    for node in started:
        await node.api.close()
        await node.server.stop(1.0)


async def test_send_rate_per_user(cluster: Any, logic_node: Any) -> None:
    node = await logic_node(send_limit="3/1h")
    (alice,), (bob,) = await cluster.new_user(), await cluster.new_user()
    for i in range(3):
        assert await node.api.send_message(alice, cx.RT_USER, bob.user_id, text(f"hi {i}")) > 0
    message = await refused(node.api.send_message(alice, cx.RT_USER, bob.user_id, text("one too many")))
    assert message == "too many messages sent by this user (3 per 1 hour): try again in 60 minutes"
    conn = await cluster.online(bob)  # the refused message was not stored
    try:
        got = await cluster.sync_all(conn, 0)
        assert [m.message_content for m in got] == [text(f"hi {i}") for i in range(3)]
    finally:
        await conn.close()
    assert await node.api.send_message(bob, cx.RT_USER, alice.user_id, text("back")) > 0  # another user: unaffected


async def test_create_group_add_friend_and_register_device_rates(cluster: Any, logic_node: Any) -> None:
    node = await logic_node(create_group_limit="2/1h", add_friend_limit="1/1h", register_device_limit="2/1h")
    (alice,), (bob,), (carol,) = await cluster.new_user(), await cluster.new_user(), await cluster.new_user()
    for i in range(2):
        assert await node.api.create_group(alice, f"g{i}") > 0
    assert "too many groups created by this user (2 per 1 hour)" in await refused(node.api.create_group(alice, "g3"))
    assert await node.api.create_group(bob, "bob's") > 0  # another user: unaffected
    await node.api.add_friend(alice, bob.user_id)
    assert "too many friend requests by this user" in await refused(node.api.add_friend(alice, carol.user_id))
    await node.api.add_friend(carol, bob.user_id)
    for _ in range(2):
        assert await node.api.register_device() > 0
    assert "too many devices registered from this address (2 per 1 hour)" in await refused(node.api.register_device())
    assert await cluster.api.register_device() > 0  # the cluster's logic exempts loopback (the default)


async def test_room_push_rate_and_new_rooms(cluster: Any, logic_node: Any, engine: Any) -> None:
    node = await logic_node(room_push_limit="4/1h", new_room_limit="1/1h")
    (alice,), (bob,) = await cluster.new_user(), await cluster.new_user()
    first, second = random.randrange(1, 1 << 50), random.randrange(1, 1 << 50)
    await node.api.push_room(alice, first, text("a"))  # creates the room
    assert "too many new rooms pushed to by this user" in await refused(node.api.push_room(alice, second, text("b")))
    async with engine.connect() as conn:  # the refused push left no seq row
        rows = await conn.scalar(
            sa.select(sa.func.count()).where(
                seq_table.c.object_type == SEQ_OBJECT_ROOM, seq_table.c.object_id == second
            )
        )
    assert rows == 0
    await node.api.push_room(alice, first, text("c"))  # an existing room: fine
    # a message to a room through SendMessage is a room push too (4th of 4)
    await node.api.send_message(alice, cx.RT_ROOM, first, text("d"), persist=False)
    assert "too many room pushes by this user (4 per 1 hour)" in await refused(
        node.api.push_room(alice, first, text("e"))
    )
    await node.api.push_room(bob, first, text("f"))  # another user: unaffected


async def test_concurrent_adds_never_exceed_the_group_limit(cluster: Any, logic_node: Any) -> None:
    node = await logic_node(max_group_members=50)
    (admin,) = await cluster.new_user()
    users = [(await cluster.new_user())[0].user_id for _ in range(200)]
    group_id = await node.api.create_group(admin, "crowded")
    batches = [users[i : i + 10] for i in range(0, 200, 10)]
    results = await asyncio.gather(
        *(node.api.add_group_members(admin, group_id, batch) for batch in batches), return_exceptions=True
    )
    added = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, GimError) and e.code == Code.BAD_REQUEST for e in errors), errors
    assert all("a group has at most 50 members" in e.message for e in errors)  # type: ignore[union-attr]
    assert len(added) == 4 and len(errors) == 16  # 1 + 4 x 10 fit in 50; a fifth batch does not
    members = await node.api.get_group_members(admin, group_id)
    assert len(members) == 41
    assert (await node.api.get_group(admin, group_id)).user_mum == 41


async def test_kept_room_bytes_are_capped(cluster: Any, logic_node: Any) -> None:
    node = await logic_node(room_keep_bytes=65_535)
    rooms = node.server.rooms
    room = random.randrange(1, 1 << 50)
    for i in range(10):
        await rooms.push(BUSINESS, Outgoing(ReceiverType.ROOM, room, cx.MT_CUSTOM, bytes([i]) * 20_000))
    kept = await rooms.kept(room, 0)
    newest = [cx.Message.FromString(m.message).message_content[0] for m in kept]
    assert newest == [7, 8, 9]  # the newest that fit 64 KiB
    held = await cluster.logic._redis.get(f"{cluster.storage.redis_prefix}room:{room}:bytes")
    members = await cluster.logic._redis.zrange(f"{cluster.storage.redis_prefix}room:{room}", 0, -1)
    assert int(held) == sum(len(m) for m in members) <= 65_535


async def test_room_replay_is_bounded_by_bytes(cluster: Any, logic_int: Any) -> None:
    """The cluster's defaults: one subscribe replays at most 256 KiB (oldest first)."""
    (viewer,) = await cluster.new_user()
    room = random.randrange(1, 1 << 50)
    for i in range(10):  # 10 x 50,000 bytes kept (under the 1 MiB kept per room)
        req = lx.PushRoomReq(
            room_id=room, message_type=cx.MT_CUSTOM, message_content=bytes([i]) * 50_000, is_persist=True
        )
        await rpc.call(logic_int.PushRoom, req, 10.0)
    conn = await cluster.online(viewer)
    try:
        out = await conn.request(cx.PT_SUBSCRIBE_ROOM, cx.SubscribeRoomInput(room_id=room, seq=1).SerializeToString())
        assert out.code == 0, out.message
        replayed = []
        while not conn.pushes.empty():  # the replay is written before the answer
            push = conn.pushes.get_nowait()
            replayed.append(cx.MessageSend.FromString(push.data).message)
        assert [m.message_content[0] for m in replayed] == [1, 2, 3, 4, 5]  # after seq 1: 5 x 50,000 <= 262,144
        again = await conn.request(
            cx.PT_SUBSCRIBE_ROOM, cx.SubscribeRoomInput(room_id=room, seq=replayed[-1].seq).SerializeToString()
        )
        assert again.code == 0
        rest = []
        while not conn.pushes.empty():
            rest.append(cx.MessageSend.FromString(conn.pushes.get_nowait().data).message)
        assert [m.message_content[0] for m in rest] == [6, 7, 8, 9]  # the rest, by subscribing again
    finally:
        await conn.close()


# -- connect: connections not signed in, and the sign-in deadline ---------------------------


@pytest.fixture
async def connect_node(cluster: Any) -> AsyncIterator[Callable[..., Awaitable[ConnectServer]]]:
    started: list[ConnectServer] = []

    async def make(**keys: Any) -> ConnectServer:
        storage = cluster.storage
        server = ConnectServer.from_config(
            ConnectConfig(
                redis_url=storage.redis_url,
                redis_prefix=storage.redis_prefix,
                grpc_status=storage.status_mode,
                tcp_listen="127.0.0.1:0",
                ws_listen="127.0.0.1:0",
                int_listen="127.0.0.1:0",
                logic_int_addr=_addr(cluster.logic.int_port),
                **{"limit_exempt": "", **keys},
            )
        )
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop(1.0)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(10):
        return await reader.read(100) == b""


async def test_connections_not_signed_in_are_capped_per_address(cluster: Any, connect_node: Any) -> None:
    server = await connect_node(max_pending_per_address=3)
    assert server.context is not None
    (creds,) = await cluster.new_user()
    writers: list[asyncio.StreamWriter] = []
    conns: list[TcpConnection] = []
    try:
        for _ in range(3):
            writers.append((await asyncio.open_connection("127.0.0.1", server.tcp_port))[1])
        await until(lambda: server.context.pending.count("127.0.0.1") == 3)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
        writers.append(writer)
        assert await closed_by_server(reader)  # the fourth: closed at accept
        with pytest.raises(InvalidStatus) as ws_refused:
            await ws_connect(f"ws://127.0.0.1:{server.ws_port}/ws")
        assert ws_refused.value.response.status_code == 429
        writers[0].close()  # one of the three leaves: room for another
        await until(lambda: server.context.pending.count("127.0.0.1") == 2)
        conns.append(await TcpConnection.open("127.0.0.1", server.tcp_port))
        out = await conns[-1].sign_in(creds.user_id, creds.device_id, creds.token)
        assert out.code == 0, out.message
        assert server.context.pending.count("127.0.0.1") == 2  # signed in: no longer pending
        conns.append(await TcpConnection.open("127.0.0.1", server.tcp_port))
        answer = await conns[-1].request(cx.PT_HEARTBEAT)  # accepted (the third pending), told to sign in
        assert answer.code == int(Code.UNAUTHORIZED)
    finally:
        for conn in conns:
            await conn.close()
        for w in writers:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def test_sign_in_queued_behind_its_device_is_closed_at_the_deadline(cluster: Any, connect_node: Any) -> None:
    server = await connect_node(sign_in_timeout=0.5)  # the deadline is the subject here
    assert server.context is not None
    (creds,) = await cluster.new_user()
    async with server.context.signing_in(creds.device_id):  # another sign-in of the device, stuck
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
        body = cx.Input(
            type=cx.PT_SIGN_IN,
            request_id=1,
            data=cx.SignInInput(
                user_id=creds.user_id, device_id=creds.device_id, token=creds.token
            ).SerializeToString(),
        ).SerializeToString()
        writer.write(len(body).to_bytes(2, "big") + body)
        await writer.drain()
        assert await closed_by_server(reader)  # while the lock is still held
        writer.close()
        await writer.wait_closed()
        assert server.registry.connections == set() or all(not s.signed_in for s in server.registry.connections)
    assert server.context.pending.count("127.0.0.1") == 0
    conn = await TcpConnection.open("127.0.0.1", server.tcp_port)  # the device can sign in afterwards
    try:
        assert (await conn.sign_in(creds.user_id, creds.device_id, creds.token)).code == 0
    finally:
        await conn.close()
