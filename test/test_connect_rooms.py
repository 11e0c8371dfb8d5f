"""Rooms and push-all end to end: LogicExt/LogicInt -> Redis pub/sub -> connect -> sockets."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest
from redis import Redis as SyncRedis

from gim.client.connection import LongConnection
from gim.pkg import broadcast, rpc
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li
from gimtest.sockets import count_sends

if TYPE_CHECKING:
    from typing import Any

    from redis.asyncio import Redis

    from gim.pkg.pb.logic_int_pb2_grpc import LogicIntStub
    from gimtest.callables import ConnectNodes, MessageRows
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


def new_room() -> int:
    return random.randrange(1, 1 << 50)


async def subscribe(conn: LongConnection, room_id: int, seq: int = 0) -> cx.Output:
    out = await conn.request(cx.PT_SUBSCRIBE_ROOM, cx.SubscribeRoomInput(room_id=room_id, seq=seq).SerializeToString())
    assert (out.type, out.code) == (cx.PT_SUBSCRIBE_ROOM, 0), out.message
    return out


async def push_room(logic_int: LogicIntStub, room_id: int, content: bytes, persist: bool = True) -> None:
    req = lx.PushRoomReq(room_id=room_id, message_type=cx.MT_TEXT, message_content=content, is_persist=persist)
    await rpc.call(logic_int.PushRoom, req, 10.0)


async def nothing_pending(conn: LongConnection) -> bool:
    """True if nothing was pushed to `conn` before now: the heartbeat answer comes after
    anything the server wrote to this connection earlier."""
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    return conn.pushes.empty()


async def test_room_with_many_subscribers_gets_every_push_in_order(
    cluster: Cluster, conns: Conns, logic_int: LogicIntStub
) -> None:
    room = new_room()
    devices = await cluster.new_user(devices=50)
    members = [await conns.open("tcp" if i % 2 else "ws", creds) for i, creds in enumerate(devices)]
    await asyncio.gather(*(subscribe(conn, room) for conn in members))
    assert cluster.connect.stats()["room_members"] >= 50
    sender = devices[0]
    for i in range(5):
        if i % 2:  # a user pushes through LogicExt, a business backend through LogicInt
            req = lx.PushRoomReq(room_id=room, message_type=cx.MT_TEXT, message_content=text(f"m{i}"))
            await cluster.api.call(cluster.api.logic.PushRoom, req, sender)
        else:
            await push_room(logic_int, room, text(f"m{i}"))
    for conn in members:
        got = [await conn.next_message() for _ in range(5)]
        assert [m.message_content for m in got] == [text(f"m{i}") for i in range(5)]
        seqs = [m.seq for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] >= 1
        assert {(m.receiver_type, m.receiver_id) for m in got} == {(cx.RT_ROOM, room)}
        assert [m.sender.sender_type for m in got] == [cx.ST_BUSINESS, cx.ST_USER] * 2 + [cx.ST_BUSINESS]
        assert got[1].sender.sender_id == sender.user_id


async def test_unsubscribe_and_switch_rooms(cluster: Cluster, conns: Conns, logic_int: LogicIntStub) -> None:
    room_a, room_b = new_room(), new_room()
    creds = await cluster.new_user(devices=3)
    stays, leaves, switches = [await conns.open(t, c) for t, c in zip(("tcp", "ws", "tcp"), creds, strict=True)]
    for conn in (stays, leaves, switches):
        await subscribe(conn, room_a)
    await subscribe(leaves, 0)
    await subscribe(switches, room_b)
    await push_room(logic_int, room_a, text("to a"))
    assert (await stays.next_message()).message_content == text("to a")
    assert await nothing_pending(leaves) and await nothing_pending(switches)
    await push_room(logic_int, room_b, text("to b"))
    assert (await switches.next_message()).message_content == text("to b")
    assert await nothing_pending(stays)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_subscribe_with_seq_replays_only_later_kept_messages(
    cluster: Cluster, conns: Conns, logic_int: LogicIntStub, transport: str
) -> None:
    room = new_room()
    watcher_creds, late_creds = await cluster.new_user(devices=2)
    watcher = await conns.open("tcp", watcher_creds)
    await subscribe(watcher, room)
    for i, persist in enumerate((True, True, False, True)):
        await push_room(logic_int, room, text(f"r{i}"), persist)
    seen = [await watcher.next_message() for _ in range(4)]
    late = await conns.open(transport, late_creds)
    await subscribe(late, room, seq=seen[0].seq)  # logic replays before the answer
    replayed = []
    while not late.pushes.empty():
        replayed.append(await late.next_message())
    assert [m.seq for m in replayed] == [seen[1].seq, seen[3].seq], "after seq, kept ones only, in order"
    assert {m.message_content for m in replayed} == {text("r1"), text("r3")}
    # and it now receives live pushes too
    await push_room(logic_int, room, text("live"))
    assert (await late.next_message()).message_content == text("live")


async def test_push_all_reaches_every_signed_in_connection(
    cluster: Cluster, conns: Conns, logic_int: LogicIntStub, connect_node: ConnectNodes
) -> None:
    other_node = await connect_node()
    creds = await cluster.new_user(devices=4)
    everyone = [
        await conns.open("tcp", creds[0]),
        await conns.open("ws", creds[1]),
        await conns.open("tcp", creds[2], server=other_node),
        await conns.open("ws", creds[3], server=other_node),
    ]
    await rpc.call(logic_int.PushAll, li.PushAllReq(message_type=cx.MT_TEXT, message_content=text("all")), 10.0)
    for conn in everyone:
        got = await conn.next_message()
        assert got.message_content == text("all") and got.sender.sender_type == cx.ST_BUSINESS


async def test_room_requests_are_validated(cluster: Cluster, conns: Conns, logic_int: LogicIntStub) -> None:
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    out = await conn.request(cx.PT_SUBSCRIBE_ROOM, cx.SubscribeRoomInput(room_id=-1).SerializeToString())
    assert (out.type, out.code) == (cx.PT_SUBSCRIBE_ROOM, Code.BAD_REQUEST)
    out = await conn.request(cx.PT_SUBSCRIBE_ROOM, b"\xff")
    assert out.code == Code.BAD_REQUEST
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0, "the connection stays"
    for bad in (
        lx.PushRoomReq(room_id=0, message_type=cx.MT_TEXT, message_content=text("x")),
        lx.PushRoomReq(room_id=1, message_type=0, message_content=text("x")),
        lx.PushRoomReq(room_id=1, message_type=cx.MT_TEXT, message_content=b""),
        lx.PushRoomReq(room_id=1, message_type=cx.MT_TEXT, message_content=b"x" * 70_000),
    ):
        with pytest.raises(GimError) as info:
            await rpc.call(logic_int.PushRoom, bad, 10.0)
        assert info.value.code == Code.BAD_REQUEST
    with pytest.raises(GimError) as info:
        await rpc.call(logic_int.PushAll, li.PushAllReq(message_type=cx.MT_TEXT), 10.0)
    assert info.value.code == Code.BAD_REQUEST


async def test_bad_broadcast_payload_is_logged_not_fatal(
    cluster: Cluster, conns: Conns, logic_int: LogicIntStub, redis: Redis, log_events: list[dict[str, Any]]
) -> None:
    room = new_room()
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    await subscribe(conn, room)
    prefix = cluster.storage.redis_prefix
    await redis.publish(broadcast.room_channel(prefix), b"\xff\xff\xff")
    await redis.publish(broadcast.all_channel(prefix), b"\x12\x05ab")
    await push_room(logic_int, room, text("after garbage"))
    assert (await conn.next_message()).message_content == text("after garbage")
    assert any(e["event"] == "broadcast_bad_payload" for e in log_events)


async def test_broadcasts_resubscribe_after_redis_drops_the_connection(
    cluster: Cluster, conns: Conns, logic_int: LogicIntStub, redis: Redis
) -> None:
    room = new_room()
    (creds,) = await cluster.new_user()
    conn = await conns.open("ws", creds)
    await subscribe(conn, room)
    subscriber = cluster.connect.broadcasts
    before = subscriber.subscriptions
    clients = [c for c in await redis.client_list(_type="pubsub") if c.get("name") == subscriber.name]
    assert clients, "the subscriber names its Redis connection"
    for client in clients:
        await redis.client_kill_filter(_id=client["id"])
    await asyncio.wait_for(subscriber.wait_subscriptions(before + 1), 10)
    await push_room(logic_int, room, text("after reconnect"))
    assert (await conn.next_message()).message_content == text("after reconnect")


async def test_send_message_to_a_room_is_a_room_push(cluster: Cluster, conns: Conns, message_rows: MessageRows) -> None:
    """SendMessage with RT_ROOM is read diffusion too: broadcast, the room's seq, nothing
    stored per user."""
    room = new_room()
    sender, listener_creds = await cluster.new_user(devices=2, nickname="Speaker")
    listener = await conns.open("tcp", listener_creds)
    await subscribe(listener, room)
    before = await message_rows()
    seq = await cluster.api.send_message(sender, cx.RT_ROOM, room, text("to the room"))
    got = await listener.next_message()
    assert (got.receiver_type, got.receiver_id, got.seq) == (cx.RT_ROOM, room, seq)
    assert (got.sender.sender_id, got.sender.nickname, got.message_content) == (
        sender.user_id,
        "Speaker",
        text("to the room"),
    )
    assert await message_rows() == before


async def test_broadcasts_received_together_go_to_a_connection_in_one_send(cluster: Cluster, conns: Conns) -> None:
    """A node behind on a busy room pushes what it has received together: each TCP
    connection gets them in order, in one send."""
    room = new_room()
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    await subscribe(conn, room)
    session = cluster.connect.registry.get(creds.device_id)
    assert session is not None
    sends = count_sends(session.transport._transport)  # type: ignore[attr-defined]  # a TcpConnection's
    channel = broadcast.room_channel(cluster.storage.redis_prefix)
    payloads = [
        ci.PushRoomMsg(
            room_id=room,
            message_send=cx.MessageSend(message=cx.Message(receiver_type=cx.RT_ROOM, receiver_id=room, seq=k, message_content=text(f"r{k}"))),
        ).SerializeToString()
        for k in (1, 2, 3)
    ]  # fmt: skip
    # Published while this process's event loop (connect's too) is held by a blocking
    # client: the three are with connect's subscriber before it reads any of them. The
    # PING comes back after Redis has written them (an earlier round of its loop).
    with SyncRedis.from_url(cluster.storage.redis_url) as publisher:
        with publisher.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(channel, payload)
            assert pipe.execute() == [1, 1, 1]
        assert publisher.ping()
    got = [await conn.next_message() for _ in payloads]
    assert [m.message_content for m in got] == [text("r1"), text("r2"), text("r3")]
    assert sends.sends == 1
