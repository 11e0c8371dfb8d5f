"""Dead connect nodes are cleaned up (issue 11): a node whose liveness key has been gone
for NODE_TTL has its devices marked offline once (by one logic node), its lane dropped,
and, should it be alive after all, it closes its connections so they sign in again."""

from __future__ import annotations

import asyncio
from typing import Any

from gim.internal.logic.dead_nodes import DeadNodes
from gim.pkg import nodes, redis_client, rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2 as li


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def online_at(cluster: Any, conn_addr: str) -> Any:
    (creds,) = await cluster.new_user()
    req = li.ConnSignInReq(
        user_id=creds.user_id, device_id=creds.device_id, token=creds.token, conn_addr=conn_addr, client_addr="c"
    )
    await rpc.call(cluster.logic_int.ConnSignIn, req, 10.0)
    return creds


def sweeper_of(cluster: Any, redis: Any, clock: Clock) -> DeadNodes:
    logic = cluster.logic
    return DeadNodes(logic.devices, redis, cluster.storage.redis_prefix, logic.deliverer, clock=clock)


async def test_a_dead_node_is_reaped_once_after_its_key_is_gone_long_enough(cluster: Any, redis: Any) -> None:
    dead = f"127.0.0.1:{redis_client.free_port()}"  # killed: no ServerStop, no key
    creds = await online_at(cluster, dead)
    live = await cluster.new_user()
    conn = await cluster.online(live[0])
    clock = Clock()
    first, second = sweeper_of(cluster, redis, clock), sweeper_of(cluster, redis, clock)
    try:
        assert await first.sweep() == [] and await second.sweep() == []  # gone, but not long enough
        assert [d.device_id for d in await cluster.logic.devices.online([creds.user_id])] == [creds.device_id]
        clock.now += nodes.NODE_TTL
        reaped = await first.sweep() + await second.sweep()
        assert reaped.count(dead) == 1, "one logic node marks the devices offline"
        assert cluster.connect.context.conn_addr not in reaped, "a node with its key is alive"
        assert await cluster.logic.devices.online([creds.user_id]) == []
        assert dead not in cluster.logic.deliverer.nodes
        assert await redis.exists(nodes.reaped_key(cluster.storage.redis_prefix, dead))
        online = await cluster.logic.devices.online([live[0].user_id])
        assert [d.device_id for d in online] == [live[0].device_id], "the live node's device stays online"
    finally:
        await conn.close()


async def test_a_key_back_in_time_saves_the_node(cluster: Any, redis: Any) -> None:
    """Redis restarted empty: every key is gone until the nodes refresh them (NODE_REFRESH
    seconds), well before NODE_TTL."""
    addr = f"127.0.0.1:{redis_client.free_port()}"
    creds = await online_at(cluster, addr)
    clock = Clock()
    sweeper = sweeper_of(cluster, redis, clock)
    await sweeper.sweep()
    clock.now += nodes.NODE_REFRESH
    await nodes.announce(redis, cluster.storage.redis_prefix, addr)
    await sweeper.sweep()
    clock.now += nodes.NODE_TTL
    assert addr not in await sweeper.sweep()
    assert [d.device_id for d in await cluster.logic.devices.online([creds.user_id])] == [creds.device_id]
    await redis.delete(nodes.node_key(cluster.storage.redis_prefix, addr))


async def test_a_node_declared_dead_while_alive_makes_its_clients_sign_in_again(
    cluster: Any, connect_node: Any, conns: Any, redis: Any
) -> None:
    node = await connect_node()
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds, server=node)
    prefix, addr = cluster.storage.redis_prefix, node.context.conn_addr
    await redis.delete(nodes.node_key(prefix, addr))  # the node could not reach Redis for long
    clock = Clock()
    sweeper = sweeper_of(cluster, redis, clock)
    await sweeper.sweep()
    clock.now += nodes.NODE_TTL
    assert addr in await sweeper.sweep()
    assert await cluster.logic.devices.online([creds.user_id]) == []
    assert await nodes.refresh(redis, prefix, addr), "the node finds the mark when it reaches Redis again"
    node.reaped()
    async with asyncio.timeout(10):
        await conn.closed.wait()
    again = await conns.open("tcp", creds, server=node)
    assert [d.device_id for d in await cluster.logic.devices.online([creds.user_id])] == [creds.device_id]
    (other,) = await cluster.new_user()
    body = cx.Text(text="back").SerializeToString()
    await cluster.api.send_message(other, cx.RT_USER, creds.user_id, body)
    assert (await again.next_message()).message_content == body
    assert not await nodes.refresh(redis, prefix, addr), "the mark is gone once seen"
