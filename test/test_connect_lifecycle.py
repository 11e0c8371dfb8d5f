"""Connection lifecycle on a connect node: replacement, concurrent sign-in, deadlines,
idle eviction, acks at close, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from gim.client.connection import LongConnection
from gim.internal.connect import server as connect_server
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


async def test_stop_with_hundreds_of_connections_some_just_gone_marks_every_device_offline(
    cluster, conns, connect_node, engine
) -> None:  # type: ignore[no-untyped-def]
    """A node's stop with 300 connections, the last 100 of which the clients dropped just
    before (their Offline calls to logic still in flight, written together): every
    connection ends, and every device is offline."""
    node = await connect_node()
    devices = [d for creds in await asyncio.gather(*(cluster.new_user(devices=5) for _ in range(60))) for d in creds]
    opened = await asyncio.gather(
        *(conns.open("ws" if i % 3 == 2 else "tcp", d, server=node) for i, d in enumerate(devices))
    )
    assert node.stats()["signed_in"] == 300
    for conn in opened[200:]:
        conn._abort()
    await node.stop(1.0)
    for conn in opened:
        await closed(conn)
    assert node.stats() == {"connections": 0, "signed_in": 0, "rooms": 0, "room_members": 0}
    ids = [d.device_id for d in devices]
    async with engine.connect() as db:
        online = await db.scalar(
            sa.select(sa.func.count()).where(device_table.c.id.in_(ids), device_table.c.status != 0)
        )
    assert online == 0


async def test_offline_calls_written_together_each_only_for_its_own_connection(
    cluster: Cluster, conns: Conns, engine: AsyncEngine
) -> None:
    """Concurrent Offline calls go in one transaction; each marks its device offline only
    if it names the device's current connection (user and client address)."""
    first, second = await cluster.new_user(devices=2)
    for device in (first, second):
        await conns.open("tcp", device)
    await cluster.connect.settle()
    addr = {d.device_id: (await device_row(engine, d.device_id))[2] for d in (first, second)}
    devices = cluster.logic.devices
    changed = await asyncio.gather(
        devices.set_offline(first.device_id, first.user_id, "127.0.0.1:1"),  # an older connection
        devices.set_offline(second.device_id, second.user_id + 1, addr[second.device_id]),  # not its user
        devices.set_offline(first.device_id, first.user_id, addr[first.device_id]),
        devices.set_offline(first.device_id, first.user_id, addr[first.device_id]),  # already done
    )
    assert changed == [False, False, True, False]
    assert (await device_row(engine, first.device_id))[0] == 0
    assert (await device_row(engine, second.device_id))[0] == 1


async def test_stop_aborts_a_websocket_that_never_answers_the_close(
    connect_node: ConnectNodes, monkeypatch: pytest.MonkeyPatch, log_events: list[dict[str, Any]]
) -> None:
    """A WebSocket client that never answers the closing handshake does not hold the stop
    past its budget: the connection is aborted."""
    monkeypatch.setattr(connect_server, "STOP_BUDGET", 0.5)
    node = await connect_node()  # close_timeout 5 s: more than the budget
    reader, writer = await asyncio.open_connection("127.0.0.1", node.ws_port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    try:
        async with asyncio.timeout(30):  # a hang guard, not a measure
            await node.stop(1.0)
            with contextlib.suppress(ConnectionResetError):
                while await reader.read(65536):  # the close frame, then the end
                    pass
    finally:
        writer.close()
    (aborted,) = [e for e in log_events if e["event"] == "ws_close_aborted"]
    assert aborted["connections"] == 1


async def test_stop_keeps_time_for_server_stop_when_a_sign_in_never_ends(
    cluster: Cluster, conns: Conns, connect_node: ConnectNodes, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in still at logic (one that never ends) does not take the whole stop budget:
    ServerStop keeps its reserve and marks the node's devices offline. The budget is the
    reserve here, so the wait for sign-ins gets nothing."""
    monkeypatch.setattr(connect_server, "STOP_BUDGET", connect_server.SERVER_STOP_RESERVE)
    node = await connect_node()  # rpc_timeout 5 s: the reserve is SERVER_STOP_RESERVE
    device, stuck = await cluster.new_user(devices=2)
    await conns.open("tcp", device, server=node)
    assert (await device_row(engine, device.device_id))[0] == 1
    async with contextlib.AsyncExitStack() as sign_in:
        await sign_in.enter_async_context(node.context.signing_in(stuck.device_id))  # as a sign-in at logic
        await node.stop(1.0)
    assert (await device_row(engine, device.device_id))[0] == 0
