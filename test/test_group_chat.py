"""Group chat by write diffusion: every member stores the message under its own seq;
every online device of every member but the sending one gets it pushed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gim.internal.logic.values import StoredMessage
from gim.pkg import redis_client, rpc
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li

if TYPE_CHECKING:
    from gimtest.callables import ExpectCode, MessageRows
    from gimtest.cluster import Cluster


MEMBERS = 200
MESSAGES = 3


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


async def users(cluster: Cluster, count: int, **kwargs) -> list:
    batches = [cluster.new_user(**kwargs) for _ in range(count)]
    return [creds for (creds,) in await asyncio.gather(*batches)]


async def stored(cluster: Cluster, user_id: int) -> list[StoredMessage]:
    """Every stored message of the user, from the database."""
    return await cluster.logic.messages.store.after(user_id, 0, 10_000)


def assert_gapless(messages: list[StoredMessage]) -> None:
    seqs = [m.seq for m in messages]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


async def test_group_of_200_half_online(cluster: Cluster) -> None:
    api = cluster.api
    members = await users(cluster, MEMBERS)
    sender = members[0]
    create = lx.CreateGroupReq(name="big", member_ids=[m.user_id for m in members[1:]])
    group_id = (await api.call(api.logic.CreateGroup, create, sender)).group_id
    online = members[: MEMBERS // 2]  # the sender's device among them: it gets no push
    conns = await asyncio.gather(*(cluster.online(m, "ws" if i % 4 == 3 else "tcp") for i, m in enumerate(online)))
    try:
        sent = [text(f"group message {i}") for i in range(MESSAGES)]
        seqs = [await api.send_message(sender, cx.RT_GROUP, group_id, body) for body in sent]
        assert seqs == list(range(seqs[0], seqs[0] + MESSAGES))

        async def received(conn) -> list[cx.Message]:  # type: ignore[no-untyped-def]
            return [await conn.next_message() for _ in range(MESSAGES)]

        pushed = await asyncio.wait_for(asyncio.gather(*(received(c) for c in conns[1:])), 60)
        for member, messages in zip(online[1:], pushed, strict=True):
            assert [m.message_content for m in messages] == sent
            assert all((m.receiver_type, m.receiver_id) == (cx.RT_GROUP, group_id) for m in messages)
            assert all(m.sender.sender_id == sender.user_id for m in messages)
            seq0 = messages[0].seq
            assert [m.seq for m in messages] == [seq0, seq0 + 1, seq0 + 2], member.user_id
        assert conns[0].pushes.empty(), "the sending device gets no push of its own message"

        for member in members:
            history = await stored(cluster, member.user_id)
            assert_gapless(history)
            assert [m.row.content for m in history[-MESSAGES:]] == sent, member.user_id
    finally:
        await asyncio.gather(*(c.close() for c in conns))


async def test_concurrent_group_sends_keep_every_member_gapless(cluster: Cluster) -> None:
    api = cluster.api
    members = await users(cluster, 30)
    create = lx.CreateGroupReq(name="busy", member_ids=[m.user_id for m in members[1:]])
    group_id = (await api.call(api.logic.CreateGroup, create, members[0])).group_id
    senders = members[:6]
    watchers = await asyncio.gather(*(cluster.online(m) for m in members[-3:]))
    try:
        sends = [
            api.send_message(s, cx.RT_GROUP, group_id, text(f"{s.user_id}/{i}")) for s in senders for i in range(5)
        ]
        await asyncio.gather(*sends)
        for conn in watchers:  # pushes leave logic in seq order, whatever the senders' timing
            seqs = [(await conn.next_message()).seq for _ in range(len(sends))]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    finally:
        await asyncio.gather(*(c.close() for c in watchers))
    for member in members:
        history = await stored(cluster, member.user_id)
        assert_gapless(history)
        bodies = [m.row.content for m in history if m.row.message_type == cx.MT_TEXT]
        assert sorted(bodies) == sorted(text(f"{s.user_id}/{i}") for s in senders for i in range(5))


async def test_a_dead_node_does_not_stop_delivery_to_the_others(cluster: Cluster) -> None:
    """One member's device is recorded online at a node that is gone: the send still
    succeeds, every other device gets its push, and the lost push is in that member's sync."""
    api = cluster.api
    sender, alive, stranded = await users(cluster, 3)
    group_id = (
        await api.call(
            api.logic.CreateGroup, lx.CreateGroupReq(name="g", member_ids=[alive.user_id, stranded.user_id]), sender
        )
    ).group_id
    dead_node = f"127.0.0.1:{redis_client.free_port()}"
    sign_in = li.ConnSignInReq(
        user_id=stranded.user_id,
        device_id=stranded.device_id,
        token=stranded.token,
        conn_addr=dead_node,
        client_addr="x",
    )
    await rpc.call(cluster.logic_int.ConnSignIn, sign_in, 10.0)
    conn = await cluster.online(alive)
    try:
        seq = await api.send_message(sender, cx.RT_GROUP, group_id, text("still here"))
        assert seq > 0
        assert (await conn.next_message()).message_content == text("still here")
        assert (await stored(cluster, stranded.user_id))[-1].row.content == text("still here")
    finally:
        await conn.close()


async def test_non_member_cannot_send(cluster: Cluster, expect_code: ExpectCode, message_rows: MessageRows) -> None:
    api = cluster.api
    owner, outsider = await users(cluster, 2)
    group_id = (await api.call(api.logic.CreateGroup, lx.CreateGroupReq(name="closed"), owner)).group_id
    before = await message_rows()
    await expect_code(api.send_message(outsider, cx.RT_GROUP, group_id, text("let me in")), Code.NOT_IN_GROUP)
    assert await message_rows() == before, "a refused send stores nothing"
