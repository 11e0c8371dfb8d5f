"""A send retried with the same request_id (say, after a logic node died before it
answered) returns the first attempt's seq and stores nothing more."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx

if TYPE_CHECKING:
    from gimtest.callables import MessageRows
    from gimtest.cluster import Cluster


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


async def nothing_more(conn) -> bool:  # type: ignore[no-untyped-def]
    """Nothing pushed before the heartbeat's answer (answers come in order)."""
    assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    return conn.pushes.empty()


async def test_retry_with_the_same_request_id_is_stored_once(cluster: Cluster, message_rows: MessageRows) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    conn = await cluster.online(bob)
    try:
        first = await api.send_message(alice, cx.RT_USER, bob.user_id, text("once"), request_id=4242)
        rows = await message_rows()
        assert (await conn.next_message()).message_content == text("once")
        again = await api.send_message(alice, cx.RT_USER, bob.user_id, text("once"), request_id=4242)
        assert again == first
        assert await message_rows() == rows
        assert await nothing_more(conn), "a recognised retry is not pushed again"

        # Same request_id with other content, or no request_id: new messages.
        other = await api.send_message(alice, cx.RT_USER, bob.user_id, text("other"), request_id=4242)
        plain = [await api.send_message(alice, cx.RT_USER, bob.user_id, text("once")) for _ in range(2)]
        assert [other, *plain] == [first + 1, first + 2, first + 3]
    finally:
        await conn.close()


async def test_concurrent_attempts_store_one_copy(cluster: Cluster, message_rows: MessageRows) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user()
    members = [creds for (creds,) in [await cluster.new_user() for _ in range(3)]]
    group_id = (
        await api.call(
            api.logic.CreateGroup, lx.CreateGroupReq(name="g", member_ids=[m.user_id for m in members]), alice
        )
    ).group_id
    rows = await message_rows()
    attempts = [api.send_message(alice, cx.RT_GROUP, group_id, text("hi all"), request_id=99) for _ in range(4)]
    seqs = await asyncio.gather(*attempts)
    assert len(set(seqs)) == 1, seqs
    assert await message_rows() == rows + 4, "one copy for each of the 4 members"
