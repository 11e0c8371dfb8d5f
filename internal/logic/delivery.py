"""Pushing messages to devices through the connect nodes that hold them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from grpc import aio

from gim.internal.logic.devices import OnlineDevice
from gim.pkg import log, rpc
from gim.pkg.pb import connect_ext_pb2, connect_int_pb2, connect_int_pb2_grpc

_log = log.get("delivery")


class Deliverer:
    """One channel per connect node address, created on first use."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._stubs: dict[str, connect_int_pb2_grpc.ConnectIntStub] = {}
        self._channels: dict[str, aio.Channel] = {}

    def _stub(self, conn_addr: str) -> connect_int_pb2_grpc.ConnectIntStub:
        stub = self._stubs.get(conn_addr)
        if stub is None:
            channel = self._channels[conn_addr] = rpc.channel(conn_addr)
            stub = self._stubs[conn_addr] = connect_int_pb2_grpc.ConnectIntStub(channel)
        return stub

    async def deliver(
        self, targets: Iterable[tuple[OnlineDevice, connect_ext_pb2.MessageSend]]
    ) -> int:
        """Deliver each message to its device; returns how many deliveries succeeded.

        A failed delivery is logged, not raised: the message is already stored and the
        device gets it through sync when it (re)connects.
        """
        calls = [self._deliver_one(device, message) for device, message in targets]
        results = await asyncio.gather(*calls)
        return sum(results)

    async def _deliver_one(self, device: OnlineDevice, message: connect_ext_pb2.MessageSend) -> bool:
        req = connect_int_pb2.DeliverMessageReq(device_id=device.device_id, message_send=message)
        try:
            await self._stub(device.conn_addr).DeliverMessage(req, timeout=self._timeout)
            return True
        except aio.AioRpcError as exc:
            _log.warning(
                "deliver_failed",
                device_id=device.device_id,
                conn_addr=device.conn_addr,
                status=exc.code().name,
                reason=exc.details(),
            )
            return False

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
