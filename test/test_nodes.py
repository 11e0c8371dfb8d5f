"""Connect-node liveness: a node announces itself in Redis while it runs; logic gives a
node with no sign of life one short try instead of a full deadline and a retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from grpc import aio

from gim.pkg import nodes, redis_client, rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci
from gim.pkg.pb import connect_int_pb2_grpc as ci_grpc
from gim.pkg.pb import logic_int_pb2 as li


async def test_a_node_is_alive_while_it_runs(cluster, connect_node, redis) -> None:  # type: ignore[no-untyped-def]
    prefix = cluster.storage.redis_prefix
    assert await redis.exists(nodes.node_key(prefix, cluster.connect.node.conn_addr))
    extra = await connect_node()
    key = nodes.node_key(prefix, extra.node.conn_addr)
    assert 0 < await redis.ttl(key) <= nodes.NODE_TTL
    await extra.stop(1.0)
    assert not await redis.exists(key), "a node that stops leaves at once"


async def test_a_dead_node_gets_one_short_try(cluster, log_events) -> None:  # type: ignore[no-untyped-def]
    (sender,) = await cluster.new_user()
    (receiver,) = await cluster.new_user()
    dead_node = f"127.0.0.1:{redis_client.free_port()}"  # was killed: never said ServerStop
    sign_in = li.ConnSignInReq(
        user_id=receiver.user_id, device_id=receiver.device_id, token=receiver.token, conn_addr=dead_node, client_addr="x"
    )
    await rpc.call(cluster.logic_int.ConnSignIn, sign_in, 10.0)
    seq = await cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, cx.Text(text="later").SerializeToString())
    assert seq > 0, "the send succeeds; the message waits for the device's sync"
    events = [(e["event"], e.get("conn_addr")) for e in log_events]
    assert ("node_not_alive", dead_node) in events
    assert events.count(("deliver_failed", dead_node)) == 1, "one try, no retry on a fresh channel"


async def test_a_live_node_whose_key_was_lost_still_gets_pushes(cluster, redis) -> None:  # type: ignore[no-untyped-def]
    """Redis restarted empty: the node is suspect until it announces itself again, yet
    its devices still get their pushes."""
    (sender,) = await cluster.new_user()
    (receiver,) = await cluster.new_user()
    conn = await cluster.online(receiver)
    prefix, node = cluster.storage.redis_prefix, cluster.connect.node.conn_addr
    try:
        await redis.delete(nodes.node_key(prefix, node))
        body = cx.Text(text="still delivered").SerializeToString()
        await cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, body)
        assert (await conn.next_message()).message_content == body
    finally:
        await nodes.announce(redis, prefix, node)
        await conn.close()


async def test_a_node_that_comes_back_counts_at_once(redis, storage) -> None:  # type: ignore[no-untyped-def]
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex}:"
    liveness = nodes.NodeLiveness(redis, prefix)
    assert await liveness.alive(["10.0.0.1:50100"]) == set()
    await nodes.announce(redis, prefix, "10.0.0.1:50100")
    assert await liveness.alive(["10.0.0.1:50100", "10.0.0.2:50100"]) == {"10.0.0.1:50100"}


async def test_delivery_channels_open_on_demand_and_close_when_idle(cluster, connect_node, conns) -> None:  # type: ignore[no-untyped-def]
    from gim.internal.logic.delivery import Deliverer
    from gim.internal.logic.devices import OnlineDevice

    extra = await connect_node()
    (a,) = await cluster.new_user()
    (b,) = await cluster.new_user()
    await conns.open("tcp", a)
    await conns.open("tcp", b, server=extra)
    now = [0.0]
    deliverer = Deliverer(5.0, idle_after=60.0, clock=lambda: now[0])
    push = cx.MessageSend(message=cx.Message(seq=1, message_type=cx.MT_TEXT)).SerializeToString()
    on_a = OnlineDevice(a.device_id, a.user_id, cluster.connect.node.conn_addr)
    on_b = OnlineDevice(b.device_id, b.user_id, extra.node.conn_addr)
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


class _HeldNode(ci_grpc.ConnectIntServicer):
    """A connect node that answers DeliverMessages only once released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def DeliverMessages(self, request: ci.DeliverMessagesReq, context: Any) -> ci.DeliverMessagesResp:
        await self.release.wait()
        return ci.DeliverMessagesResp()


async def test_queued_deliveries_are_counted_until_done(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gim.internal.logic import delivery
    from gim.internal.logic.devices import OnlineDevice

    node = _HeldNode()
    server = aio.server()
    ci_grpc.add_ConnectIntServicer_to_server(node, server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    monkeypatch.setattr(delivery, "MAX_QUEUED", 2)
    deliverer = delivery.Deliverer(5.0)
    push = cx.MessageSend(message=cx.Message(seq=1, message_type=cx.MT_TEXT)).SerializeToString()
    try:
        first = await deliverer.start([(OnlineDevice(d, d, addr), push) for d in (1, 2)])
        assert (deliverer.queued, deliverer.backlogged) == (2, False)
        second = await deliverer.start([(OnlineDevice(d, d, addr), push) for d in (3, 4)])
        assert (deliverer.queued, deliverer.backlogged) == (4, True), "senders now wait for their deliveries"
        node.release.set()
        assert (await first, await second) == (2, 2)
        assert (deliverer.queued, deliverer.backlogged) == (0, False)
    finally:
        await deliverer.close()
        await server.stop(0)
