"""Every message fits a frame (issue 11): a big group's PC_ADD_GROUP_MEMBERS is split into
events that each fit, a message that could never reach a device in one frame is refused
(10001) before anything is stored, and a sync moves past a stored message too large for
a frame instead of closing the connection on it forever."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import sqlalchemy as sa

from gim.client.api import Credentials
from gim.internal.logic import seqs
from gim.internal.logic.edge.message_encoding import MESSAGE_MAX, varint, worst_case_size
from gim.internal.logic.values import MessageRow, now_ms
from gim.pkg.errors import Code
from gim.pkg.limits import FRAME_MAX
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import push_ext_pb2 as push
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.schema import SEQ_OBJECT_USER, MessageShards
from gim.pkg.schema import user as user_table
from gimtest.cluster import DEV_CODE, SHARDS

if TYPE_CHECKING:
    from typing import Any

    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.callables import DecodeCommand
    from gimtest.cluster import Cluster


MEMBERS = 600
AVATAR_URL = "https://cdn.example.com/avatars/" + "a" * 64  # 96 bytes
EXTRA = '{"level": 3, "badge": "' + "b" * 39 + '"}'  # 64 bytes


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


async def seed_users(engine: AsyncEngine, count: int) -> list[tuple[int, str]]:
    """`count` users with ordinary profiles, straight into the user table: (user_id, phone)."""
    prefix = f"17{random.randrange(10**6):06d}"
    phones = [f"{prefix}{i:04d}" for i in range(count)]
    rows = [
        {"phone_number": p, "nickname": f"member {i}", "avatar_url": AVATAR_URL, "extra": EXTRA}
        for i, p in enumerate(phones)
    ]
    async with engine.begin() as conn:
        await conn.execute(user_table.insert(), rows)
        found = await conn.execute(
            sa.select(user_table.c.phone_number, user_table.c.id).where(user_table.c.phone_number.like(prefix + "%"))
        )
        ids = {str(phone): int(user_id) for phone, user_id in found}
    return [(ids[p], p) for p in phones]


async def sign_in(cluster: Cluster, phone: str) -> Credentials:
    return await cluster.api.sign_in(phone, DEV_CODE, await cluster.api.register_device())


def added_members(events: list[cx.Message], group_id: int, command: DecodeCommand) -> list[int]:
    """The user ids the PC_ADD_GROUP_MEMBERS events of the group tell of, in order."""
    added: list[int] = []
    for message in events:
        code, data = command(message, push.AddGroupMembersPush)
        assert (code, message.receiver_type, message.receiver_id) == (push.PC_ADD_GROUP_MEMBERS, cx.RT_GROUP, group_id)
        for member in data.members:
            assert (member.avatar_url, member.user_extra) == (AVATAR_URL, EXTRA), "the profile travels whole"
        added += [m.user_id for m in data.members]
    return added


async def test_a_600_member_group_is_created_and_every_member_syncs_it_to_the_end(
    cluster: Cluster, engine: AsyncEngine, command: DecodeCommand
) -> None:
    api = cluster.api
    users = await seed_users(engine, MEMBERS)
    creator = await sign_in(cluster, users[0][1])
    live_member = await sign_in(cluster, users[1][1])
    sample = [await sign_in(cluster, users[i][1]) for i in (2, 150, 300, 450, MEMBERS - 1)]
    others = [user_id for user_id, _ in users[1:]]
    live = await cluster.online(live_member)
    try:
        create = lx.CreateGroupReq(name="six hundred", member_ids=others)
        group_id = (await api.call(api.logic.CreateGroup, create, creator)).group_id

        pushed: list[cx.Message] = []
        while len(added_members(pushed, group_id, command)) < len(others):  # bounded: one event per member at most
            assert len(pushed) < len(others)
            pushed.append(await live.next_message(timeout=30))
        assert len(pushed) >= 2, "600 ordinary profiles do not fit one frame: the event is split"
        assert added_members(pushed, group_id, command) == others, "each new member told once, in order"
        assert [m.seq for m in pushed] == list(range(pushed[0].seq, pushed[0].seq + len(pushed)))
        assert all(m.ByteSize() <= MESSAGE_MAX for m in pushed)
    finally:
        await live.close()

    members = await api.call(api.logic.GetGroupMembers, lx.GetGroupMembersReq(group_id=group_id), creator)
    assert len(members.members) == MEMBERS
    groups = await api.call(api.logic.GetGroups, lx.GetGroupsReq(), creator)
    assert [g.group_id for g in groups.groups] == [group_id], "one group, created once"

    for creds in [creator, *sample]:
        conn = await cluster.online(creds)
        try:
            synced = await cluster.sync_all(conn, 0)  # every page, to has_more false
            events = [m for m in synced if m.receiver_id == group_id and m.message_type == cx.MT_COMMAND]
            assert added_members(events, group_id, command) == others, creds.user_id
            assert (await conn.request(cx.PT_HEARTBEAT)).code == 0, "the connection is still open"
        finally:
            await conn.close()


async def test_a_message_that_cannot_fit_a_frame_is_refused_and_nothing_stored(  # type: ignore[no-untyped-def]
    cluster, monkeypatch, expect_code, message_rows
) -> None:
    """Even where max_content_bytes would let it through: user, group and business
    sends, user and business room pushes and push-all answer 10001, nothing stored."""
    monkeypatch.setattr(cluster.logic.messages, "max_content_bytes", FRAME_MAX)
    monkeypatch.setattr(cluster.logic.rooms, "max_content_bytes", FRAME_MAX)
    api = cluster.api
    sender, receiver = [c for (c,) in await asyncio.gather(cluster.new_user(), cluster.new_user())]
    create = lx.CreateGroupReq(name="too big", member_ids=[receiver.user_id])
    group_id = (await api.call(api.logic.CreateGroup, create, sender)).group_id
    room_id = random.randrange(10**9, 10**12)
    big = b"x" * 65_000
    before = await message_rows()

    for refused in (
        api.send_message(sender, cx.RT_USER, receiver.user_id, big, cx.MT_CUSTOM),
        api.send_message(sender, cx.RT_GROUP, group_id, big, cx.MT_CUSTOM),
        api.call(api.logic.PushRoom, lx.PushRoomReq(room_id=room_id, message_type=cx.MT_CUSTOM, message_content=big, is_persist=True), sender),
        cluster.api.call(cluster.logic_int.SendMessage, lx.SendMessageReq(receiver_type=cx.RT_USER, receiver_id=receiver.user_id, message_type=cx.MT_CUSTOM, message_content=big)),
        cluster.api.call(cluster.logic_int.PushRoom, lx.PushRoomReq(room_id=room_id, message_type=cx.MT_CUSTOM, message_content=big)),
        cluster.api.call(cluster.logic_int.PushAll, li.PushAllReq(message_type=cx.MT_CUSTOM, message_content=big)),
    ):  # fmt: skip
        error = await expect_code(refused, Code.BAD_REQUEST)
        assert "too large for one long-connection frame" in error.message

    assert await message_rows() == before, "nothing stored"
    small = lx.PushRoomReq(room_id=room_id, message_type=cx.MT_TEXT, message_content=text("fits"), is_persist=True)
    await api.call(api.logic.PushRoom, small, sender)
    kept = await cluster.logic.rooms.kept(room_id, 0)
    assert [m.seq for m in kept] == [1], "the refused pushes took no room seq"


def largest_fitting_content(receiver_id: int) -> int:
    """The longest message_content a user's message to `receiver_id` may carry."""
    empty = MessageRow(0, cx.ST_USER, 1, cx.RT_USER, receiver_id, [], cx.MT_CUSTOM, b"", now_ms())
    fixed = worst_case_size(empty)
    size = MESSAGE_MAX - fixed - 4
    while fixed + 1 + len(varint(size + 1)) + size + 1 <= MESSAGE_MAX:
        size += 1
    return size


async def test_the_largest_message_that_fits_reaches_devices_with_the_largest_sender_profile(  # type: ignore[no-untyped-def]
    cluster, monkeypatch, expect_code
) -> None:
    """The check reserves room for the sender's profile at its column limits (4-byte
    characters): the largest accepted message is pushed and synced whole, one byte more
    is refused."""
    monkeypatch.setattr(cluster.logic.messages, "max_content_bytes", FRAME_MAX)
    api = cluster.api
    sender, receiver = [c for (c,) in await asyncio.gather(cluster.new_user(), cluster.new_user())]
    wide = "\U0001f600"
    profile = ux.UpdateUserReq(nickname=wide * 50, avatar_url=wide * 255, extra=wide * 1024)
    await api.call(api.users.UpdateUser, profile, sender)
    size = largest_fitting_content(receiver.user_id)
    await expect_code(
        api.send_message(sender, cx.RT_USER, receiver.user_id, b"y" * (size + 1), cx.MT_CUSTOM), Code.BAD_REQUEST
    )
    conn = await cluster.online(receiver)
    try:
        seq = await api.send_message(sender, cx.RT_USER, receiver.user_id, b"y" * size, cx.MT_CUSTOM)
        pushed = await conn.next_message()
        assert (len(pushed.message_content), pushed.sender.extra) == (size, wide * 1024)
        synced = await cluster.sync_all(conn, 0)
        assert [len(m.message_content) for m in synced] == [size]
        assert synced[0].sender.nickname == wide * 50
    finally:
        await conn.close()
    assert seq > 0


async def test_a_sync_moves_past_a_stored_message_too_large_for_a_frame(
    cluster: Cluster, engine: AsyncEngine, log_events: list[dict[str, Any]]
) -> None:
    """A row stored before sizes were checked (inserted here directly) comes as a stand-in
    with its seq and no content; the sync reaches the end and the connection stays."""
    api = cluster.api
    sender, receiver = [c for (c,) in await asyncio.gather(cluster.new_user(), cluster.new_user())]
    await api.send_message(sender, cx.RT_USER, receiver.user_id, text("before"))
    oversized = MessageRow(
        request_id=0,
        sender_type=cx.ST_USER,
        sender_id=sender.user_id,
        receiver_type=cx.RT_USER,
        receiver_id=receiver.user_id,
        to_user_ids=[2**62 + i for i in range(3000)],  # 27 KB as a Message, 60 KB as stored text
        message_type=cx.MT_CUSTOM,
        content=b"z" * 60_000,
        send_time=1,
    )
    assert worst_case_size(oversized) > FRAME_MAX
    async with engine.begin() as conn:
        legacy_seq = (await seqs.allocate(conn, SEQ_OBJECT_USER, {receiver.user_id: 1}))[receiver.user_id]
        table = MessageShards(SHARDS).table_for(receiver.user_id)
        await conn.execute(
            table.insert().values(
                user_id=receiver.user_id, seq=legacy_seq, request_id=0, sender_type=oversized.sender_type,
                sender_id=oversized.sender_id, receiver_type=oversized.receiver_type, receiver_id=oversized.receiver_id,
                to_user_ids=",".join(map(str, oversized.to_user_ids)), type=oversized.message_type,
                content=oversized.content, send_time=oversized.send_time, status=1,
            )
        )  # fmt: skip
    await api.send_message(sender, cx.RT_USER, receiver.user_id, text("after"))

    conn = await cluster.online(receiver)
    try:
        synced = await cluster.sync_all(conn, 0)
        assert [m.seq for m in synced] == [legacy_seq - 1, legacy_seq, legacy_seq + 1]
        assert [m.message_content for m in synced] == [text("before"), b"", text("after")]
        stand_in = synced[1]
        assert (stand_in.message_type, stand_in.sender.sender_id, stand_in.receiver_id) == (
            cx.MT_UNKNOWN, sender.user_id, receiver.user_id,
        )  # fmt: skip
        assert list(stand_in.to_user_ids) == []
        assert [m.seq for m in await cluster.sync_all(conn, legacy_seq - 1)] == [legacy_seq, legacy_seq + 1]
        assert (await conn.request(cx.PT_HEARTBEAT)).code == 0, "the connection is still open"
    finally:
        await conn.close()
    warnings = [e for e in log_events if e["event"] == "sync_message_too_large"]
    assert warnings and warnings[0]["seq"] == legacy_seq


async def test_one_oversized_delivery_does_not_cost_the_other_devices_theirs(
    cluster: Cluster, log_events: list[dict[str, Any]]
) -> None:
    """ConnectInt.DeliverMessages with a message too large for a frame (only an older
    logic could send one) among others: the others are pushed, every connection stays."""
    from gim.pkg import rpc
    from gim.pkg.pb import connect_int_pb2 as ci
    from gim.pkg.pb import connect_int_pb2_grpc

    (big_receiver,), (other,) = await asyncio.gather(cluster.new_user(), cluster.new_user())
    conns = [await cluster.online(big_receiver), await cluster.online(other)]
    channel = rpc.channel(f"127.0.0.1:{cluster.connect.int_port}")
    try:

        def send(device_id: int, content: bytes) -> ci.DeliverMessageReq:
            message = cx.Message(sender=cx.Sender(sender_type=cx.ST_BUSINESS), receiver_type=cx.RT_ROOM, receiver_id=7,
                                 message_type=cx.MT_CUSTOM, message_content=content)  # fmt: skip
            return ci.DeliverMessageReq(device_id=device_id, message_send=cx.MessageSend(message=message))

        req = ci.DeliverMessagesReq(
            messages=[send(big_receiver.device_id, b"z" * 70_000), send(other.device_id, b"small")]
        )
        resp = await connect_int_pb2_grpc.ConnectIntStub(channel).DeliverMessages(req, timeout=10)
        assert list(resp.absent_device_ids) == []
        assert (await conns[1].next_message()).message_content == b"small"
        for conn in conns:
            assert (await conn.request(cx.PT_HEARTBEAT)).code == 0, "the connection is still open"
        assert conns[0].pushes.empty()
    finally:
        await channel.close()
        await asyncio.gather(*(c.close() for c in conns))
    assert any(e["event"] in ("deliver_too_large", "push_too_large") for e in log_events), "the skipped push is logged"
