"""`gim admin` and the private LogicAdmin calls behind it: the connect nodes with their
liveness and connection counts, a user's devices and their node, and a device kicked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gim.cmd.gim import main as gim_main
from gim.internal.logic.server import LogicServer
from gim.pkg import health, redis_client, rpc
from gim.pkg.config import LogicConfig
from gim.pkg.pb import logic_int_pb2 as int_
from gim.pkg.pb import logic_int_pb2_grpc as int_grpc


def gim_admin(capsys: pytest.CaptureFixture[str], logic_int: str, *args: str) -> str:
    capsys.readouterr()
    gim_main(["admin", "--logic", logic_int, *args])
    return capsys.readouterr().out


async def test_nodes_devices_and_kick(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    online, offline = await cluster.new_user(devices=2)
    conn = await cluster.online(online)
    logic_int = f"127.0.0.1:{cluster.logic.int_port}"
    conn_addr = f"127.0.0.1:{cluster.connect.int_port}"
    channel = rpc.channel(logic_int)
    admin = int_grpc.LogicAdminStub(channel)
    try:
        nodes = {n.conn_addr: n for n in (await admin.ListNodes(int_.ListNodesReq())).nodes}
        node = nodes[conn_addr]
        stats = cluster.connect.stats()
        assert (node.alive, node.answered) == (True, True)
        assert (node.connections, node.signed_in) == (stats["connections"], stats["signed_in"])
        assert node.signed_in >= 1 and node.online_devices >= 1

        devices = (await admin.GetUserDevices(int_.GetUserDevicesReq(user_id=online.user_id))).devices
        assert [(d.device.device_id, d.device.status, d.conn_addr) for d in devices] == [
            (online.device_id, 1, conn_addr),
            (offline.device_id, 0, ""),
        ]
        text = await asyncio.to_thread(gim_admin, capsys, logic_int, "user", str(online.user_id))
        lines = text.splitlines()
        assert lines[0].split() == ["DEVICE", "TYPE", "BRAND", "MODEL", "STATUS", "NODE"]
        assert lines[1].split()[0] == str(online.device_id) and lines[1].split()[-2:] == ["online", conn_addr]
        assert lines[2].split()[-2:] == ["offline", "-"]
        text = await asyncio.to_thread(gim_admin, capsys, logic_int, "nodes")
        assert any(line.split()[:2] == [conn_addr, "yes"] for line in text.splitlines()), text

        text = await asyncio.to_thread(gim_admin, capsys, logic_int, "kick", str(online.device_id))
        assert text.strip() == f"device {online.device_id}: connection closed at {conn_addr}"
        async with asyncio.timeout(10):
            await conn.closed.wait()  # the server closed the device's connection
            while (await admin.GetUserDevices(int_.GetUserDevicesReq(user_id=online.user_id))).devices[0].conn_addr:
                await asyncio.sleep(0.05)  # until the node has told logic it is offline
        text = await asyncio.to_thread(gim_admin, capsys, logic_int, "kick", str(online.device_id))
        assert text.strip() == f"device {online.device_id} has no open connection"
        with pytest.raises(SystemExit, match="10014"):  # DEVICE_NOT_FOUND
            await asyncio.to_thread(gim_admin, capsys, logic_int, "kick", str(2**40))
    finally:
        await conn.close()
        await channel.close()


async def test_admin_needs_the_internal_secret_health_does_not(
    storage: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-" + "x" * 16
    logic = LogicServer.from_config(
        LogicConfig(
            database_url=storage.database_url,
            redis_url=storage.redis_url,
            redis_prefix=storage.redis_prefix,
            message_shards=4,
            int_listen="127.0.0.1:0",
            ext_listen="127.0.0.1:0",
            business_int_addr=f"127.0.0.1:{redis_client.free_port()}",
            internal_secret=secret,
        )
    )
    await logic.start()
    logic_int = f"127.0.0.1:{logic.int_port}"
    try:
        with pytest.raises(
            SystemExit, match=r"internal call refused: missing or wrong gim-internal-secret \(code 10000\)"
        ):
            await asyncio.to_thread(gim_admin, capsys, logic_int, "nodes")
        assert await health.check_addr(logic_int) == "SERVING"  # probes carry no secret
        monkeypatch.setenv("GIM_INTERNAL_SECRET", secret)  # as in the nodes' environment
        text = await asyncio.to_thread(gim_admin, capsys, logic_int, "user", "999999999")
        assert text.strip() == "user 999999999 has no devices"
    finally:
        await logic.stop(0)
