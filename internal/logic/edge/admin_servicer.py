"""LogicAdmin: the operator's view behind `gim admin` (logic's private port; an edge).

- `ListNodes`: every connect node that keeps a liveness key in Redis or holds online
  devices in the database, with whether it is alive and what it holds (its
  ConnectInt.GetStats answer);
- `GetUserDevices`: a user's devices and the node of each online one;
- `KickDevice`: close a device's connection (ConnectInt.CloseConnection on its node);
  the node then marks it offline as for any closed connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from grpc import aio

from gim.internal.logic.devices import Device, DeviceStore
from gim.pkg import log, nodes, rpc
from gim.pkg.pb import connect_int_pb2, connect_int_pb2_grpc
from gim.pkg.pb import logic_int_pb2 as int_
from gim.pkg.pb import logic_int_pb2_grpc as int_grpc
from gim.pkg.redis_outage import UNREACHABLE
from gim.pkg.schema import DEVICE_ONLINE

_log = log.get("admin")

Context = aio.ServicerContext[Any, Any]
MAX_NODES = 1000  # node keys read from Redis at most
DEVICE_FIELDS = [f.name for f in dataclasses.fields(Device) if f.name not in ("conn_addr", "client_addr")]


def device_info(device: Device) -> int_.UserDevice:
    online = device.status == DEVICE_ONLINE
    return int_.UserDevice(
        device=int_.Device(**{name: getattr(device, name) for name in DEVICE_FIELDS}),
        conn_addr=device.conn_addr if online else "",
    )


class LogicAdminServicer(int_grpc.LogicAdminServicer):
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        devices: DeviceStore,
        timeout: float,
        channel: Callable[[str], aio.Channel] = rpc.channel,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._devices = devices
        self._timeout = timeout
        self._channel = channel

    async def ListNodes(self, request: int_.ListNodesReq, context: Context) -> int_.ListNodesResp:
        alive = await self._alive_nodes()
        online = await self._devices.online_per_node()
        infos = await asyncio.gather(
            *(self._node(a, a in alive, online.get(a, 0)) for a in sorted(alive | set(online)))
        )
        return int_.ListNodesResp(nodes=infos)

    async def GetUserDevices(self, request: int_.GetUserDevicesReq, context: Context) -> int_.GetUserDevicesResp:
        devices = await self._devices.of_user(request.user_id)
        return int_.GetUserDevicesResp(devices=[device_info(d) for d in devices])

    async def KickDevice(self, request: int_.KickDeviceReq, context: Context) -> int_.KickDeviceResp:
        device = await self._devices.get(request.device_id)
        if device.status != DEVICE_ONLINE or not device.conn_addr:
            return int_.KickDeviceResp(closed=False)
        req = connect_int_pb2.CloseConnectionReq(device_id=device.device_id, client_addr=device.client_addr)
        channel = self._channel(device.conn_addr)
        try:
            answer = await rpc.call(connect_int_pb2_grpc.ConnectIntStub(channel).CloseConnection, req, self._timeout)
        finally:
            await channel.close()
        _log.info("device_kicked", device_id=device.device_id, conn_addr=device.conn_addr, closed=answer.closed)
        return int_.KickDeviceResp(closed=answer.closed, conn_addr=device.conn_addr)

    async def _alive_nodes(self) -> set[str]:
        """The conn_addr of every node whose liveness key is in Redis (none if Redis cannot say)."""
        start = nodes.node_key(self._prefix, "")
        found: set[str] = set()
        try:
            async for key in self._redis.scan_iter(match=f"{start}*", count=200):
                found.add((key.decode() if isinstance(key, bytes) else str(key))[len(start) :])
                if len(found) >= MAX_NODES:
                    break
        except UNREACHABLE as exc:
            _log.warning("admin_redis_unreachable", error=str(exc))
        return found

    async def _node(self, conn_addr: str, alive: bool, online: int) -> int_.NodeInfo:
        info = int_.NodeInfo(conn_addr=conn_addr, alive=alive, online_devices=online)
        channel = self._channel(conn_addr)
        try:
            stats = await rpc.call(
                connect_int_pb2_grpc.ConnectIntStub(channel).GetStats, connect_int_pb2.GetStatsReq(), self._timeout
            )
        except Exception as exc:  # a dead or older node: shown without its counts
            _log.info("node_stats_failed", conn_addr=conn_addr, error=str(exc)[:200])
            return info
        finally:
            await channel.close()
        info.answered = True
        info.connections, info.signed_in = stats.connections, stats.signed_in
        info.rooms, info.room_members = stats.rooms, stats.room_members
        return info
