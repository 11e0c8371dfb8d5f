"""Connection lifecycle on a connect node: replacement, concurrent sign-in, deadlines,
idle eviction, acks at close, shutdown."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from gim.client.connection import LongConnection
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.schema import device as device_table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.callables import ConnectNodes
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


TEXT = cx.Text(text="hi").SerializeToString()


async def device_row(engine: AsyncEngine, device_id: int) -> tuple[int, str, str]:
    """(status, conn_addr, client_addr) of the device."""
    query = sa.select(device_table.c.status, device_table.c.conn_addr, device_table.c.client_addr).where(
        device_table.c.id == device_id
    )
    async with engine.connect() as conn:
        status, conn_addr, client_addr = (await conn.execute(query)).one()
    return int(status), str(conn_addr), str(client_addr)


async def closed(conn: LongConnection) -> None:
    await asyncio.wait_for(conn.closed.wait(), 10)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_reconnect_replaces_the_old_connection(
    cluster: Cluster, conns: Conns, engine: AsyncEngine, transport: str
) -> None:
    (device,) = await cluster.new_user()
    (friend,) = await cluster.new_user()
    old = await conns.open(transport, device)
    new = await conns.open("ws" if transport == "tcp" else "tcp", device)
    await closed(old)
    await cluster.connect.settle()  # the old connection's close has been handled
    status, _, client_addr = await device_row(engine, device.device_id)
    assert status == 1, "the old connection's close did not mark the device offline"
    assert client_addr == cluster.connect.registry.get(device.device_id).client_addr
    await cluster.api.send_message(friend, cx.RT_USER, device.user_id, TEXT)
    assert (await new.next_message()).message_content == TEXT


async def test_concurrent_sign_ins_of_one_device_leave_exactly_one_connection(
    cluster: Cluster, conns: Conns, engine: AsyncEngine
) -> None:
    (friend,) = await cluster.new_user()
    for _ in range(5):
        (device,) = await cluster.new_user()
        pair = [await conns.open("tcp"), await conns.open("ws")]
        answers = await asyncio.gather(
            *(c.sign_in(device.user_id, device.device_id, device.token) for c in pair), return_exceptions=True
        )
        assert any(isinstance(a, type(cx.Output())) and a.code == 0 for a in answers)
        done, _ = await asyncio.wait(
            [asyncio.create_task(c.closed.wait()) for c in pair], timeout=10, return_when="FIRST_COMPLETED"
        )
        assert len(done) == 1
        (live,) = [c for c in pair if not c.closed.is_set()]
        assert (await live.request(cx.PT_HEARTBEAT)).code == 0
        await live.sync(2**62)  # as clients do once signed in: pushes flow from here
        await cluster.connect.settle()
        session = cluster.connect.registry.get(device.device_id)
        assert session is not None and not session.closed
        assert await device_row(engine, device.device_id) == (1, cluster.connect.context.conn_addr, session.client_addr)
        await cluster.api.send_message(friend, cx.RT_USER, device.user_id, TEXT)
        assert (await live.next_message()).message_content == TEXT


async def test_idle_connection_is_evicted_and_marked_offline(
    cluster: Cluster, conns: Conns, connect_node: ConnectNodes, engine: AsyncEngine
) -> None:
    node = await connect_node(idle_timeout=0.5)
    tcp_device, ws_device = await cluster.new_user(devices=2)
    idle = [await conns.open("tcp", tcp_device, server=node), await conns.open("ws", ws_device, server=node)]
    for conn in idle:
        await closed(conn)
    await node.settle()
    assert node.stats()["connections"] == 0
    for device in (tcp_device, ws_device):
        assert (await device_row(engine, device.device_id))[0] == 0


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_no_sign_in_before_the_deadline_closes_the_connection(
    conns: Conns, connect_node: ConnectNodes, transport: str
) -> None:
    node = await connect_node(sign_in_timeout=0.2)
    conn = await conns.open(transport, server=node)
    await closed(conn)
    assert node.stats()["connections"] == 0


async def test_ack_queued_just_before_close_still_reaches_logic(cluster: Cluster, conns: Conns) -> None:
    (device,) = await cluster.new_user()
    conn = await conns.open("tcp", device)
    await conn.send(cx.PT_SYNC, cx.SyncInput(seq=0).SerializeToString(), request_id=1)  # keeps the worker busy
    await conn.ack(123)
    await conn.close()
    await cluster.connect.settle()
    assert await cluster.logic.messages.acks.of_device(device.user_id, device.device_id) == 123


async def test_stop_refuses_sign_in_closes_sessions_and_marks_devices_offline(
    cluster, conns, connect_node, engine
) -> None:  # type: ignore[no-untyped-def]
    node = await connect_node()
    tcp_device, ws_device, late_device = await cluster.new_user(devices=3)
    live = [await conns.open("tcp", tcp_device, server=node), await conns.open("ws", ws_device, server=node)]
    late = await conns.open("tcp", server=node)
    assert (await device_row(engine, tcp_device.device_id))[0] == 1
    node.context.stopping = True  # what stop() sets first
    out = await late.sign_in(late_device.user_id, late_device.device_id, late_device.token)
    assert (out.type, out.code) == (cx.PT_SIGN_IN, Code.BAD_REQUEST) and "shutting down" in out.message
    await closed(late)
    node.context.stopping = False
    await node.stop(1.0)
    for conn in live:
        await closed(conn)
    assert node.stats() == {"connections": 0, "signed_in": 0, "rooms": 0, "room_members": 0}
    for device in (tcp_device, ws_device, late_device):
        assert (await device_row(engine, device.device_id))[0] == 0
