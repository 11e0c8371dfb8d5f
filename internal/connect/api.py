"""ConnectInt: logic pushes a message to a device held by this node."""

from __future__ import annotations

from typing import Any

from grpc import aio

from gim.internal.connect.registry import Registry
from gim.pkg import log
from gim.pkg.pb import connect_int_pb2, connect_int_pb2_grpc

_log = log.get("connect")


class ConnectIntServicer(connect_int_pb2_grpc.ConnectIntServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def DeliverMessage(
        self, request: connect_int_pb2.DeliverMessageReq, context: aio.ServicerContext[Any, Any]
    ) -> connect_int_pb2.DeliverMessageResp:
        session = self.registry.get(request.device_id)
        if session is None:
            # The device left (or moved to another node): it gets the message by sync.
            _log.info("deliver_no_connection", device_id=request.device_id)
        else:
            session.push(request.message_send.SerializeToString())
        return connect_int_pb2.DeliverMessageResp()
