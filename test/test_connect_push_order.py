"""A device never gets seq N+1 before N (issue 11): connect restores the order of pushes
that cross on their way (consecutive messages stored by different logic nodes), fetches
the ones that never come, and skips the seqs the device sent itself. Real TCP
connections to the cluster; crossings made by calling ConnectInt.DeliverMessages
directly, as two logic nodes would."""

from __future__ import annotations

from typing import Any

from gim.internal.logic.values import MessageRow, now_ms
from gim.pkg import rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci
from gim.pkg.pb import connect_int_pb2_grpc
from gim.pkg.pb import logic_int_pb2 as li


def text(body: str) -> bytes:
    return cx.Text(text=body).SerializeToString()


def delivery(device_id: int, seq: int, body: str) -> ci.DeliverMessageReq:
    message = cx.Message(
        sender=cx.Sender(sender_type=cx.ST_SYSTEM), receiver_type=cx.RT_USER, message_type=cx.MT_TEXT,
        message_content=text(body), seq=seq,
    )  # fmt: skip
    return ci.DeliverMessageReq(device_id=device_id, message_send=cx.MessageSend(message=message))


async def deliver(cluster: Any, *messages: ci.DeliverMessageReq) -> None:
    """One DeliverMessages call to the cluster's connect node, as logic makes it."""
    async with rpc.channel(f"127.0.0.1:{cluster.connect.int_port}") as channel:
        stub = connect_int_pb2_grpc.ConnectIntStub(channel)
        await stub.DeliverMessages(ci.DeliverMessagesReq(messages=messages), timeout=10)


async def test_crossed_pushes_reach_the_device_in_seq_order(cluster: Any, conns: Any) -> None:
    (alice,) = await cluster.new_user()  # no messages yet: her order starts at 0
    conn = await conns.open("tcp", alice)
    await deliver(cluster, delivery(alice.device_id, 2, "second"))  # logic node B was faster
    await deliver(cluster, delivery(alice.device_id, 1, "first"), delivery(alice.device_id, 3, "third"))
    got = [await conn.next_message() for _ in range(3)]
    assert [(m.seq, m.message_content) for m in got] == [(1, text("first")), (2, text("second")), (3, text("third"))]
    await deliver(cluster, delivery(alice.device_id, 2, "second"))  # a repeated push: already given
    await deliver(cluster, delivery(alice.device_id, 4, "fourth"))
    assert (await conn.next_message()).seq == 4


async def test_a_push_that_never_comes_is_fetched_before_the_next(cluster: Any, conns: Any) -> None:
    (bob,) = await cluster.new_user()
    (alice,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    first = await cluster.api.send_message(bob, cx.RT_USER, alice.user_id, text("one"))
    assert (await conn.next_message()).message_content == text("one")
    # stored for alice, but its push is lost (say, its logic node died right after the commit)
    row = MessageRow(
        request_id=0, sender_type=cx.ST_USER, sender_id=bob.user_id, receiver_type=cx.RT_USER,
        receiver_id=alice.user_id, to_user_ids=[], message_type=cx.MT_TEXT, content=text("two"), send_time=now_ms(),
    )  # fmt: skip
    stored = await cluster.logic.messages.store.store(row, [alice.user_id, bob.user_id])
    await cluster.api.send_message(bob, cx.RT_USER, alice.user_id, text("three"))
    got = [await conn.next_message() for _ in range(2)]
    assert [m.message_content for m in got] == [text("two"), text("three")]
    assert got[0].seq == stored[alice.user_id] and got[0].sender.sender_id == bob.user_id
    assert got[1].seq == got[0].seq + 1 and first < got[0].seq


async def test_the_sending_device_gets_no_echo_and_no_wait(cluster: Any, conns: Any, log_events: Any) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    conn = await conns.open("tcp", alice)
    own = await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, text("from alice"))
    await cluster.api.send_message(bob, cx.RT_USER, alice.user_id, text("from bob"))
    message = await conn.next_message()
    assert (message.seq, message.message_content) == (own + 1, text("from bob"))
    assert conn.pushes.empty()
    assert not [e for e in log_events if e["event"].startswith("push_gap")]


async def test_a_fill_from_seq_0_is_not_cut_short_by_another_devices_ack(cluster: Any, conns: Any) -> None:
    """A device whose order starts at 0 misses the push of seq 1 while another device of
    its user has acked past it: connect's gap fill starts at 0 exactly, not "after the
    highest ack of the user's devices" (what a client's PT_SYNC from 0 means), so seq 1
    is fetched, not skipped."""
    alice, laptop = await cluster.new_user(devices=2)
    conn = await conns.open("tcp", alice)  # no messages yet: her order starts at 0
    store = cluster.logic.messages.store
    seqs = []
    for body in ("one", "two"):
        row = MessageRow(
            request_id=0, sender_type=cx.ST_SYSTEM, sender_id=0, receiver_type=cx.RT_USER,
            receiver_id=alice.user_id, to_user_ids=[], message_type=cx.MT_TEXT, content=text(body),
            send_time=now_ms(),
        )  # fmt: skip
        seqs.append((await store.store(row, [alice.user_id]))[alice.user_id])
    assert seqs == [1, 2]
    ack = li.MessageACKReq(user_id=alice.user_id, device_id=laptop.device_id, device_ack=2)
    await rpc.call(cluster.logic_int.MessageACK, ack, 10)  # her laptop has both
    await deliver(cluster, delivery(alice.device_id, 2, "two"))  # the push of seq 1 was lost
    got = [await conn.next_message() for _ in range(2)]
    assert [(m.seq, m.message_content) for m in got] == [(1, text("one")), (2, text("two"))]
