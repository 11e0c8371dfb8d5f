"""Connect-node liveness: a node announces itself in Redis while it runs; logic gives a
node with no sign of life one short try instead of a full deadline and a retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from gim.pkg import nodes, redis_client, rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci
from gim.pkg.pb import logic_int_pb2 as li

if TYPE_CHECKING:
    import pytest
    from redis.asyncio import Redis

    from gimtest.backends import Storage
    from gimtest.callables import ConnectNodes
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


async def deliveries_done(cluster: Any) -> None:
    """Wait (bounded) until logic has an answer for every delivery it queued (a send
    answers before its pushes are queued: those first)."""
    async with asyncio.timeout(30):
        await cluster.logic.messages.fanout.wait_queued()
        while cluster.logic.deliverer.backlog:
            await asyncio.sleep(0.01)


async def test_a_node_is_alive_while_it_runs(cluster: Cluster, connect_node: ConnectNodes, redis: Redis) -> None:
    prefix = cluster.storage.redis_prefix
    assert await redis.exists(nodes.node_key(prefix, cluster.connect.context.conn_addr))
    extra = await connect_node()
    key = nodes.node_key(prefix, extra.context.conn_addr)
    assert 0 < await redis.ttl(key) <= nodes.NODE_TTL
    await extra.stop(1.0)
    assert not await redis.exists(key), "a node that stops leaves at once"


async def test_a_dead_node_gets_one_short_try(cluster: Cluster, log_events: list[dict[str, Any]]) -> None:
    (sender,) = await cluster.new_user()
    (receiver,) = await cluster.new_user()
    dead_node = f"127.0.0.1:{redis_client.free_port()}"  # was killed: never said ServerStop
    sign_in = li.ConnSignInReq(
        user_id=receiver.user_id,
        device_id=receiver.device_id,
        token=receiver.token,
        conn_addr=dead_node,
        client_addr="x",
    )
    await rpc.call(cluster.logic_int.ConnSignIn, sign_in, 10.0)
    seq = await cluster.api.send_message(
        sender, cx.RT_USER, receiver.user_id, cx.Text(text="later").SerializeToString()
    )
    assert seq > 0, "the send succeeds; the message waits for the device's sync"
    await deliveries_done(cluster)
    events = [(e["event"], e.get("conn_addr")) for e in log_events]
    assert ("node_not_alive", dead_node) in events
    assert events.count(("deliver_failed", dead_node)) == 1, "one try, no retry on a fresh channel"


async def test_a_live_node_whose_key_was_lost_still_gets_pushes(cluster: Cluster, redis: Redis) -> None:
    """Redis restarted empty: the node is suspect until it announces itself again, yet
    its devices still get their pushes."""
    (sender,) = await cluster.new_user()
    (receiver,) = await cluster.new_user()
    conn = await cluster.online(receiver)
    prefix, node = cluster.storage.redis_prefix, cluster.connect.context.conn_addr
    try:
        await redis.delete(nodes.node_key(prefix, node))
        body = cx.Text(text="still delivered").SerializeToString()
        await cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, body)
        assert (await conn.next_message()).message_content == body
    finally:
        await nodes.announce(redis, prefix, node)
        await conn.close()


async def test_a_node_that_comes_back_counts_at_once(redis: Redis, storage: Storage) -> None:
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex}:"
    liveness = nodes.NodeLiveness(redis, prefix)
    assert await liveness.alive(["10.0.0.1:50100"]) == set()
    await nodes.announce(redis, prefix, "10.0.0.1:50100")
    assert await liveness.alive(["10.0.0.1:50100", "10.0.0.2:50100"]) == {"10.0.0.1:50100"}


async def test_delivery_channels_open_on_demand_and_close_when_idle(
    cluster: Cluster, connect_node: ConnectNodes, conns: Conns
) -> None:
    from gim.internal.logic.edge.connect_client import Deliverer
    from gim.internal.logic.values import OnlineDevice

    extra = await connect_node()
    (a,) = await cluster.new_user()
    (b,) = await cluster.new_user()
    await conns.open("tcp", a)
    await conns.open("tcp", b, server=extra)
    now = [0.0]
    deliverer = Deliverer(5.0, idle_after=60.0, clock=lambda: now[0])
    push = cx.MessageSend(message=cx.Message(seq=1, message_type=cx.MT_TEXT)).SerializeToString()
    on_a = OnlineDevice(a.device_id, a.user_id, cluster.connect.context.conn_addr)
    on_b = OnlineDevice(b.device_id, b.user_id, extra.context.conn_addr)
    try:
        assert await deliverer.deliver([(on_a, push)]) == 1
        assert deliverer.nodes == {on_a.conn_addr}
        now[0] += 61
        assert await deliverer.deliver([(on_b, push)]) == 1
        assert deliverer.nodes == {on_b.conn_addr}, "the idle channel to the first node is closed"
        assert await deliverer.deliver([(on_a, push), (on_b, push)]) == 2, "and opened again on demand"
        assert deliverer.nodes == {on_a.conn_addr, on_b.conn_addr}
    finally:
        await deliverer.close()


async def test_deliveries_keep_their_order_when_a_node_channel_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed call is retried on a new channel; what was queued for the node after
    the failure still waits behind it, not on a lane of its own."""
    from gim.internal.logic.edge.connect_client import Deliverer
    from gim.internal.logic.values import OnlineDevice

    calls: list[list[int]] = []
    retrying, release = asyncio.Event(), asyncio.Event()

    async def call_node(conn_addr: str, chunk: Any, timeout: float) -> int:
        calls.append([m.device_id for m in ci.DeliverMessagesReq.FromString(chunk.data).messages])
        if len(calls) == 1:
            raise aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, aio.Metadata(), aio.Metadata(), "node restarted")
        if len(calls) == 2:
            retrying.set()
            await release.wait()
        return chunk.count

    deliverer = Deliverer(5.0)
    monkeypatch.setattr(deliverer, "_call_node", call_node)
    push = cx.MessageSend(message=cx.Message(seq=1, message_type=cx.MT_TEXT)).SerializeToString()
    node = "127.0.0.1:1"
    try:
        first = await deliverer.start([(OnlineDevice(1, 1, node), push)])
        await retrying.wait()  # the first call failed; its retry is on its way
        second = await deliverer.start([(OnlineDevice(2, 2, node), push)])
        for _ in range(10):
            await asyncio.sleep(0)
        assert calls == [[1], [1]], "the later delivery waits behind the retry"
        release.set()
        assert (await first, await second) == (1, 1)
        assert calls == [[1], [1], [2]]
    finally:
        await deliverer.close()


def test_a_node_s_deliveries_are_cut_into_bounded_calls() -> None:
    from gim.internal.logic.edge.connect_client import LANE_UNITS, _chunks, _units

    small = [bytes([i % 256]) * 10 for i in range(2 * LANE_UNITS + 500)]
    chunks = _chunks(small, False)
    assert [c.count for c in chunks] == [LANE_UNITS, LANE_UNITS, 500]
    assert b"".join(c.data for c in chunks) == b"".join(small), "in order, nothing lost"
    large = [b"x" * 60_000] * 150  # 150 pushes of 60 KB: about 8.6 MiB, more than one call takes
    chunks = _chunks(large, True)
    assert len(chunks) > 1 and all(_units(c) <= LANE_UNITS and c.suspect for c in chunks)
    assert sum(c.count for c in chunks) == 150
    assert len(_chunks([b"y" * 2_000_000], False)) == 1, "one delivery larger than the bound still goes, alone"
