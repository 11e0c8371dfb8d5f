"""The foundation path end to end, over real sockets against the three real services:
register device -> sign in -> long connection -> single chat -> delivery -> sync -> ack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from gim.client.connection import WsConnection
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import user_ext_pb2 as ux

if TYPE_CHECKING:
    from gimtest.cluster import Cluster


TEXT = cx.Text(text="hello 你好").SerializeToString()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_single_chat_delivery_sync_and_ack(cluster: Cluster, transport: str) -> None:
    alice_phone1, alice_phone2 = await cluster.new_user(devices=2)
    (bob,) = await cluster.new_user()
    await cluster.api.call(cluster.api.users.UpdateUser, ux.UpdateUserReq(nickname="Alice"), alice_phone1)
    await cluster.api.call(cluster.api.users.UpdateUser, ux.UpdateUserReq(nickname="Bob"), bob)
    a1 = await cluster.online(alice_phone1, transport)
    b1 = await cluster.online(bob, transport)
    try:
        # Alice -> Bob: stored for both, pushed to Bob's device, not to the sending device.
        seq = await cluster.api.send_message(alice_phone1, cx.RT_USER, bob.user_id, TEXT, request_id=77)
        assert seq >= 1
        got = await b1.next_message()
        assert got.message_content == TEXT
        assert (got.sender.sender_type, got.sender.sender_id) == (cx.ST_USER, alice_phone1.user_id)
        assert got.sender.nickname == "Alice"
        assert (got.receiver_type, got.receiver_id) == (cx.RT_USER, bob.user_id)
        assert got.seq >= 1 and got.status == cx.MS_NORMAL and got.send_time > 0

        # Bob -> Alice, many: Alice's second device is offline and gets them by sync.
        bob_seqs = [await cluster.api.send_message(bob, cx.RT_USER, alice_phone1.user_id, TEXT) for _ in range(120)]
        assert bob_seqs == list(range(bob_seqs[0], bob_seqs[0] + 120)), "the sender's seqs are gapless"
        pushed = [await a1.next_message() for _ in range(120)]
        assert [m.seq for m in pushed] == list(range(seq + 1, seq + 121)), "Alice's seqs follow her own send"
        assert all(m.sender.sender_id == bob.user_id for m in pushed)

        a2 = await cluster.online(alice_phone2, transport)
        try:
            # seq 0 = after the highest ack of any of Alice's devices; the sending device acked `seq`.
            synced = await cluster.sync_all(a2, 0)
            assert [m.seq for m in synced] == [m.seq for m in pushed]
            assert all(m.message_content == TEXT for m in synced)
            assert all(m.sender.nickname == "Bob" for m in synced), "sync fills in the sender's nickname"
            # A later ack advances the device ack, so a new sync from 0 starts after it.
            await a2.ack(synced[-1].seq)
            hb = await a2.request(cx.PT_HEARTBEAT)
            assert (hb.type, hb.code) == (cx.PT_HEARTBEAT, 0)
            assert (await a2.sync(0)).messages == []
            # An explicit seq ignores acks.
            assert [m.seq for m in await cluster.sync_all(a2, seq)] == [m.seq for m in pushed]
        finally:
            await a2.close()
    finally:
        await a1.close()
        await b1.close()


async def test_heartbeat_echoes_request_id(cluster: Cluster) -> None:
    (user,) = await cluster.new_user()
    conn = await cluster.online(user, "tcp")
    try:
        await conn.send(cx.PT_HEARTBEAT, request_id=4242)
        out = await conn.next_push()
        assert (out.type, out.request_id, out.code) == (cx.PT_HEARTBEAT, 4242, 0)
    finally:
        await conn.close()


async def test_websocket_sign_in_by_query_parameters(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    url = f"{cluster.ws_url}?user_id={bob.user_id}&device_id={bob.device_id}&token={bob.token}"
    conn = await WsConnection.open(url)
    try:
        hb = await conn.request(cx.PT_HEARTBEAT)
        assert hb.code == 0
        await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, TEXT)
        got = await conn.next_message()
        assert got.sender.sender_id == alice.user_id
    finally:
        await conn.close()


async def test_reconnect_replaces_old_connection(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    old = await cluster.online(bob, "tcp")
    new = await cluster.online(bob, "ws")
    try:
        await old.closed.wait()  # the server closed the replaced connection
        await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, TEXT)
        got = await new.next_message()
        assert got.sender.sender_id == alice.user_id
        device = await cluster.logic.devices.get(bob.device_id)
        assert device.status == 1, "the old connection's close did not mark the device offline"
    finally:
        await old.close()
        await new.close()
