"""Devices belong to their users (issue 12, items 1 and 6): a takeover is refused and the
owner's connection is untouched; a sign-in on another node closes the device's connection
on the first; connect pushes only to the user a delivery is for; every bad token gets the
same answer."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from gim.client.api import Credentials
from gim.client.connection import LongConnection
from gim.pkg import rpc
from gim.pkg.errors import BAD_TOKEN, Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci
from gim.pkg.pb import connect_int_pb2_grpc as ci_grpc
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.schema import device as device_table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gim.pkg.pb.logic_int_pb2_grpc import LogicIntStub
    from gimtest.callables import ExpectCode
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


DEV_CODE = "0000"
TEXT = cx.Text(text="still mine").SerializeToString()
TIMEOUT = 10.0


def new_phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


async def device_row(engine: AsyncEngine, device_id: int) -> tuple[int, int, str, str]:
    """(owner, status, conn_addr, client_addr) of the device."""
    c = device_table.c
    query = sa.select(c.user_id, c.status, c.conn_addr, c.client_addr).where(c.id == device_id)
    async with engine.connect() as conn:
        owner, status, conn_addr, client_addr = (await conn.execute(query)).one()
    return int(owner), int(status), str(conn_addr), str(client_addr)


async def closed(conn: LongConnection) -> None:
    await asyncio.wait_for(conn.closed.wait(), TIMEOUT)


async def still_receives(cluster: Cluster, conn: LongConnection, creds: Credentials) -> None:
    """The connection is open and gets a message sent to its user now."""
    assert not conn.closed.is_set()
    (friend,) = await cluster.new_user()
    content = cx.Text(text=uuid.uuid4().hex).SerializeToString()
    await cluster.api.send_message(friend, cx.RT_USER, creds.user_id, content)
    assert (await conn.next_message()).message_content == content


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_takeover_is_refused_and_the_owner_keeps_its_connection(
    cluster, conns, engine, expect_code, transport
) -> None:  # type: ignore[no-untyped-def]
    (alice,) = await cluster.new_user()
    conn = await conns.open(transport, alice)
    intruder = new_phone()
    error = await expect_code(cluster.api.sign_in(intruder, DEV_CODE, alice.device_id), Code.DEVICE_NOT_YOURS)
    assert "another user" in error.message
    assert (await device_row(engine, alice.device_id))[:2] == (alice.user_id, 1)
    await still_receives(cluster, conn, alice)
    # the refusal created nobody: the intruder's first sign-in on a device of his own is new
    own_device = await cluster.api.register_device()
    resp = await cluster.api.call(
        cluster.api.users.SignIn, ux.SignInReq(phone_number=intruder, code=DEV_CODE, device_id=own_device)
    )
    assert resp.is_new
    # and the intruder's user, now existing, is refused too
    await expect_code(cluster.api.sign_in(intruder, DEV_CODE, alice.device_id), Code.DEVICE_NOT_YOURS)
    await still_receives(cluster, conn, alice)


async def test_the_owner_signs_in_on_its_device_again(cluster: Cluster, engine: AsyncEngine) -> None:
    phone = new_phone()
    device_id = await cluster.api.register_device()
    assert (await device_row(engine, device_id))[0] == 0  # nobody's until the first sign-in
    first = await cluster.api.sign_in(phone, DEV_CODE, device_id)
    again = await cluster.api.sign_in(phone, DEV_CODE, device_id)
    assert again.user_id == first.user_id == (await device_row(engine, device_id))[0]


async def test_two_users_racing_for_a_new_device_one_wins(cluster: Cluster, engine: AsyncEngine) -> None:
    for _ in range(3):
        device_id = await cluster.api.register_device()
        phones = [new_phone() for _ in range(4)]
        answers = await asyncio.gather(
            *(cluster.api.sign_in(p, DEV_CODE, device_id) for p in phones), return_exceptions=True
        )
        won = [a for a in answers if isinstance(a, Credentials)]
        lost = [a for a in answers if not isinstance(a, Credentials)]
        assert len(won) == 1, answers
        assert all(isinstance(a, GimError) and a.code == Code.DEVICE_NOT_YOURS for a in lost), lost
        assert (await device_row(engine, device_id))[0] == won[0].user_id


async def test_a_long_connection_sign_in_never_rewrites_the_owner(
    cluster: Cluster, conns: Conns, engine: AsyncEngine
) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    # a token of bob for alice's device, as a business backend that does not check
    # ownership (or one from before ownership) would issue it
    token = await cluster.business.app.tokens.issue(bob.user_id, alice.device_id)
    for transport in ("tcp", "ws"):
        attempt = await conns.open(transport)
        out = await attempt.sign_in(bob.user_id, alice.device_id, token)
        assert (out.type, out.code) == (cx.PT_SIGN_IN, Code.UNAUTHORIZED)
        await closed(attempt)
    resp = await rpc.call(
        cluster.logic_int.ConnSignIns,
        li.ConnSignInsReq(
            sign_ins=[
                li.ConnSignInReq(
                    user_id=bob.user_id,
                    device_id=alice.device_id,
                    token=token,
                    conn_addr="127.0.0.1:1",
                    client_addr="elsewhere#1",
                )
            ]
        ),  # fmt: skip
        TIMEOUT,
    )
    assert [r.code for r in resp.results] == [Code.UNAUTHORIZED]
    await cluster.connect.settle()
    owner, status, _, client_addr = await device_row(engine, alice.device_id)
    assert (owner, status, client_addr) == (alice.user_id, 1, cluster.connect.registry.get(alice.device_id).client_addr)
    await still_receives(cluster, conn, alice)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_sign_in_on_another_node_closes_the_connection_on_the_first(
    cluster, conns, connect_node, engine, transport
) -> None:  # type: ignore[no-untyped-def]
    node2 = await connect_node()
    (alice,) = await cluster.new_user()
    first = await conns.open(transport, alice)
    second = await conns.open(transport, alice, server=node2)
    await closed(first)
    await cluster.connect.settle()  # node 1 has handled the close (and told logic)
    assert cluster.connect.registry.get(alice.device_id) is None
    owner, status, conn_addr, client_addr = await device_row(engine, alice.device_id)
    assert (owner, status, conn_addr) == (alice.user_id, 1, node2.context.conn_addr), "node 1's close marked it offline"
    assert client_addr == node2.registry.get(alice.device_id).client_addr
    await still_receives(cluster, second, alice)


async def test_close_connection_spares_a_newer_connection(cluster: Cluster, conns: Conns) -> None:
    (alice,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    channel = rpc.channel(f"127.0.0.1:{cluster.connect.int_port}")
    try:
        stub = ci_grpc.ConnectIntStub(channel)
        for device_id, client_addr in [(alice.device_id, "127.0.0.1:9#1"), (alice.device_id, ""), (2**62, "x")]:
            req = ci.CloseConnectionReq(device_id=device_id, client_addr=client_addr)
            assert not (await rpc.call(stub.CloseConnection, req, TIMEOUT)).closed
        await still_receives(cluster, conn, alice)
        session = cluster.connect.registry.get(alice.device_id)
        req = ci.CloseConnectionReq(device_id=alice.device_id, client_addr=session.client_addr)
        assert (await rpc.call(stub.CloseConnection, req, TIMEOUT)).closed
        await closed(conn)
    finally:
        await channel.close()


async def test_close_connection_reaches_a_connection_still_signing_in(cluster: Cluster, conns: Conns) -> None:
    # logic answered its sign-in and then the device's next one elsewhere, before this node
    # bound it: found by client_addr among the connections not signed in yet
    before = set(cluster.connect.registry.connections)
    conn = await conns.open("tcp")
    async with asyncio.timeout(TIMEOUT):
        while not (fresh := set(cluster.connect.registry.connections) - before):
            await asyncio.sleep(0.01)
    (session,) = fresh
    channel = rpc.channel(f"127.0.0.1:{cluster.connect.int_port}")
    try:
        req = ci.CloseConnectionReq(device_id=2**62, client_addr=session.client_addr)
        assert (await rpc.call(ci_grpc.ConnectIntStub(channel).CloseConnection, req, TIMEOUT)).closed
        await closed(conn)
    finally:
        await channel.close()


def _delivery(device_id: int, user_id: int, text: str) -> ci.DeliverMessageReq:
    message = cx.Message(sender=cx.Sender(sender_type=cx.ST_BUSINESS), receiver_type=cx.RT_USER, message_type=cx.MT_TEXT,
                         message_content=cx.Text(text=text).SerializeToString())  # fmt: skip
    return ci.DeliverMessageReq(device_id=device_id, user_id=user_id, message_send=cx.MessageSend(message=message))


async def test_a_delivery_for_another_user_is_not_pushed(cluster: Cluster, conns: Conns) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    channel = rpc.channel(f"127.0.0.1:{cluster.connect.int_port}")
    try:
        stub = ci_grpc.ConnectIntStub(channel)
        wrong = ci.DeliverMessagesReq(messages=[_delivery(alice.device_id, bob.user_id, "for bob")])
        resp = await rpc.call(stub.DeliverMessages, wrong, TIMEOUT)
        assert list(resp.absent_device_ids) == [alice.device_id]
        await rpc.call(stub.DeliverMessage, _delivery(alice.device_id, bob.user_id, "for bob too"), TIMEOUT)
        # the right user, and an older logic that does not say (0), are pushed
        right = ci.DeliverMessagesReq(messages=[_delivery(alice.device_id, alice.user_id, "for alice"),
                                                _delivery(alice.device_id, 0, "from an older logic")])  # fmt: skip
        assert not (await rpc.call(stub.DeliverMessages, right, TIMEOUT)).absent_device_ids
        texts = [cx.Text.FromString((await conn.next_message()).message_content).text for _ in range(2)]
        assert texts == ["for alice", "from an older logic"]  # nothing for bob came before them
        assert conn.pushes.empty()
    finally:
        await channel.close()


async def test_every_bad_token_gets_the_same_answer(cluster: Cluster, conns: Conns, expect_code: ExpectCode) -> None:
    (alice,) = await cluster.new_user()
    unknown_device = await cluster.api.register_device()
    bad = [
        Credentials(alice.user_id, alice.device_id, "wrong-token"),  # the device has a live token, not this one
        Credentials(alice.user_id, unknown_device, alice.token),  # no token at all for this device
    ]
    answers = []
    for creds in bad:
        send = cluster.api.call(cluster.api.logic.SendMessage, lx.SendMessageReq(
            receiver_type=cx.RT_USER, receiver_id=alice.user_id, message_type=cx.MT_TEXT, message_content=TEXT), creds)  # fmt: skip
        via_logic = await expect_code(send, Code.UNAUTHORIZED)
        via_business = await expect_code(
            cluster.api.call(cluster.api.users.GetUser, ux.GetUserReq(user_id=1), creds), Code.UNAUTHORIZED
        )
        conn = await conns.open("tcp")
        out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
        answers.append((via_logic.message, via_business.message, out.code, out.message))
    assert answers[0] == answers[1] == (BAD_TOKEN, BAD_TOKEN, Code.UNAUTHORIZED, BAD_TOKEN)


async def test_release_hands_the_device_over(
    cluster: Cluster, conns: Conns, engine: AsyncEngine, logic_int: LogicIntStub, expect_code: ExpectCode
) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    not_owner = await rpc.call(
        logic_int.ReleaseDevice, li.ReleaseDeviceReq(device_id=alice.device_id, user_id=bob.user_id), TIMEOUT
    )
    assert not not_owner.released
    await still_receives(cluster, conn, alice)
    resp = await rpc.call(
        logic_int.ReleaseDevice, li.ReleaseDeviceReq(device_id=alice.device_id, user_id=alice.user_id), TIMEOUT
    )
    assert resp.released
    await closed(conn)  # its connection is closed
    await cluster.connect.settle()
    assert (await device_row(engine, alice.device_id))[:2] == (0, 0)
    phone = new_phone()
    taken = await cluster.api.sign_in(phone, DEV_CODE, alice.device_id)  # the next user owns it
    assert (await device_row(engine, alice.device_id))[0] == taken.user_id
    await expect_code(
        rpc.call(logic_int.ClaimDevice, li.ClaimDeviceReq(device_id=alice.device_id, user_id=alice.user_id), TIMEOUT),
        Code.DEVICE_NOT_YOURS,
    )
    await expect_code(
        rpc.call(logic_int.ClaimDevice, li.ClaimDeviceReq(device_id=2**62, user_id=alice.user_id), TIMEOUT),
        Code.DEVICE_NOT_FOUND,
    )
