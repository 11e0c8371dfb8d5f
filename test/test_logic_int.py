"""LogicInt through real gRPC: devices, online state, business sends, acks and sync input."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gim.pkg import rpc
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li

if TYPE_CHECKING:
    from gimtest.callables import ExpectCode
    from gimtest.cluster import Cluster


TIMEOUT = 10.0


async def online_devices(cluster: Cluster, user_id: int) -> set[int]:
    return {d.device_id for d in await cluster.logic.devices.online([user_id])}


async def test_register_and_get_device(cluster: Cluster, expect_code: ExpectCode) -> None:
    api = cluster.api
    req = lx.RegisterDeviceReq(type=2, brand="Apple", model="iPhone 15", system_version="17.1", sdk_version="1.0")
    device_id = (await api.call(api.logic.RegisterDevice, req)).device_id
    device = (await rpc.call(cluster.logic_int.GetDevice, li.GetDeviceReq(device_id=device_id), TIMEOUT)).device
    assert (device.device_id, device.type, device.brand, device.model, device.status) == (
        device_id,
        2,
        "Apple",
        "iPhone 15",
        0,
    )
    assert device.create_time > 0
    missing = li.GetDeviceReq(device_id=device_id + 10**9)
    await expect_code(rpc.call(cluster.logic_int.GetDevice, missing, TIMEOUT), Code.DEVICE_NOT_FOUND)
    await expect_code(rpc.call(cluster.logic_int.GetDevice, li.GetDeviceReq(device_id=0), TIMEOUT), Code.BAD_REQUEST)
    await expect_code(api.call(api.logic.RegisterDevice, lx.RegisterDeviceReq(type=9)), Code.BAD_REQUEST)
    await expect_code(
        api.call(api.logic.RegisterDevice, lx.RegisterDeviceReq(type=1, brand="b" * 51)), Code.BAD_REQUEST
    )


async def test_offline_checks_client_addr_and_server_stop_clears_a_node(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    node = "127.0.0.1:1"  # a node address of this test only
    for creds, client in ((alice, "10.0.0.1:5000"), (bob, "10.0.0.2:5000")):
        req = li.ConnSignInReq(
            user_id=creds.user_id, device_id=creds.device_id, token=creds.token, conn_addr=node, client_addr=client
        )
        await rpc.call(cluster.logic_int.ConnSignIn, req, TIMEOUT)
    assert await online_devices(cluster, alice.user_id) == {alice.device_id}

    # An old connection's Offline (another client address) leaves the device online.
    stale = li.OfflineReq(user_id=alice.user_id, device_id=alice.device_id, client_addr="10.0.0.9:1")
    await rpc.call(cluster.logic_int.Offline, stale, TIMEOUT)
    assert await online_devices(cluster, alice.user_id) == {alice.device_id}
    current = li.OfflineReq(user_id=alice.user_id, device_id=alice.device_id, client_addr="10.0.0.1:5000")
    await rpc.call(cluster.logic_int.Offline, current, TIMEOUT)
    assert await online_devices(cluster, alice.user_id) == set()

    assert await online_devices(cluster, bob.user_id) == {bob.device_id}
    await rpc.call(cluster.logic_int.ServerStop, li.ServerStopReq(conn_addr=node), TIMEOUT)
    assert await online_devices(cluster, bob.user_id) == set()


async def test_business_send_and_unpersisted_messages(cluster: Cluster, expect_code: ExpectCode) -> None:
    (alice,) = await cluster.new_user()
    conn = await cluster.online(alice)
    body = cx.Text(text="from the business").SerializeToString()
    try:
        req = lx.SendMessageReq(
            receiver_type=cx.RT_USER,
            receiver_id=alice.user_id,
            message_type=cx.MT_TEXT,
            message_content=body,
            is_persist=True,
        )
        resp = await rpc.call(cluster.logic_int.SendMessage, req, TIMEOUT)
        assert resp.seq == 0, "a business sender has no seq of its own"
        pushed = await conn.next_message()
        assert (pushed.sender.sender_type, pushed.message_content) == (cx.ST_BUSINESS, body)
        assert pushed.seq > 0

        live = lx.SendMessageReq(
            receiver_type=cx.RT_USER,
            receiver_id=alice.user_id,
            message_type=cx.MT_TEXT,
            message_content=b"live",
            is_persist=False,
        )
        await rpc.call(cluster.logic_int.SendMessage, live, TIMEOUT)
        transient = await conn.next_message()
        assert (transient.seq, transient.message_content) == (0, b"live")
        synced = await cluster.sync_all(conn, pushed.seq - 1)
        assert [m.seq for m in synced] == [pushed.seq], "an unpersisted message is not stored"

        bad_ack = li.MessageACKReq(user_id=alice.user_id, device_id=alice.device_id, device_ack=-1)
        await expect_code(rpc.call(cluster.logic_int.MessageACK, bad_ack, TIMEOUT), Code.BAD_REQUEST)
        bad_sync = li.SyncReq(user_id=alice.user_id, device_id=alice.device_id, seq=-1)
        await expect_code(rpc.call(cluster.logic_int.Sync, bad_sync, TIMEOUT), Code.BAD_REQUEST)
        await rpc.call(
            cluster.logic_int.MessageACK,
            li.MessageACKReq(user_id=alice.user_id, device_id=alice.device_id, device_ack=pushed.seq),
            TIMEOUT,
        )
        assert (
            await rpc.call(cluster.logic_int.Sync, li.SyncReq(user_id=alice.user_id, seq=0), TIMEOUT)
        ).messages == []
    finally:
        await conn.close()


async def test_concurrent_sign_ins_with_an_unknown_device(cluster: Cluster, expect_code: ExpectCode) -> None:
    """Sign-ins arriving together are written together; an unknown device fails alone."""
    users = [creds for (creds,) in [await cluster.new_user() for _ in range(5)]]
    node = "127.0.0.1:2"  # a node address of this test only
    devices = cluster.logic.devices
    sign_ins = [devices.set_online(u.device_id, u.user_id, node, f"client-{i}") for i, u in enumerate(users)]
    unknown = devices.set_online(users[0].device_id + 10**9, users[0].user_id, node, "client-x")
    results = await asyncio.gather(*sign_ins, unknown, return_exceptions=True)
    assert results[:-1] == [None] * 5
    await expect_code(_raised(results[-1]), Code.DEVICE_NOT_FOUND)
    for u in users:
        assert await online_devices(cluster, u.user_id) == {u.device_id}
    await rpc.call(cluster.logic_int.ServerStop, li.ServerStopReq(conn_addr=node), TIMEOUT)


async def _raised(result: object) -> None:
    assert isinstance(result, BaseException), result
    raise result
