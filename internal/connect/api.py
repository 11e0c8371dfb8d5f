"""ConnectInt: logic pushes messages to devices held by this node."""

from __future__ import annotations

from typing import Any

from grpc import aio

from gim.internal.connect.registry import Registry
from gim.internal.connect.session import Session
from gim.internal.connect.sockets import held_writes
from gim.pkg import log, metrics
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2, connect_int_pb2_grpc
from gim.pkg.protocol.push_order import SENT

_log = log.get("connect")


class ConnectIntServicer(connect_int_pb2_grpc.ConnectIntServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.refusals = log.Summary(_log)

    def _push(self, request: connect_int_pb2.DeliverMessageReq) -> bool:
        """Queue the message on the device's connection; False if this node has none, or
        none signed in as the user the message is for."""
        session = self.registry.get(request.device_id)
        arriving = self.registry.arriving.get(request.device_id)
        if arriving is not None and arriving is not session:  # not bound yet: it may lack this one
            arriving.missed_push()
        if session is None:
            return False
        if request.user_id and request.user_id != session.user_id:  # 0: an older logic, which does not say
            # The device changed hands since logic looked it up: the message is not for
            # whoever holds it now. Its user gets it by sync.
            self.refusals.warning(
                "deliver_wrong_user", kind="user", device_id=request.device_id, for_user=request.user_id,
                session_user=session.user_id,
            )  # fmt: skip
            return False
        if request.sent_seq:  # the device sent that message itself: its order moves past it
            session.push_stored(request.sent_seq, SENT)
            return True
        message = request.message_send.message
        # a room's replayed messages carry the room's seq: no place in the device's order
        seq = message.seq if message.receiver_type != cx.RT_ROOM else 0
        # one too large for a frame (never from a current logic) is logged and skipped
        session.push_stored(seq, request.message_send.SerializeToString())
        return True

    async def DeliverMessage(
        self, request: connect_int_pb2.DeliverMessageReq, context: aio.ServicerContext[Any, Any]
    ) -> connect_int_pb2.DeliverMessageResp:
        delivered = self._push(request)
        metrics.CONNECT_PUSHES.labels("delivered" if delivered else "no_connection").inc()
        if not delivered:
            # The device left (or moved to another node): it gets the message by sync.
            _log.info("deliver_no_connection", device_id=request.device_id)
        return connect_int_pb2.DeliverMessageResp()

    async def DeliverMessages(
        self, request: connect_int_pb2.DeliverMessagesReq, context: aio.ServicerContext[Any, Any]
    ) -> connect_int_pb2.DeliverMessagesResp:
        """Push each message, in order, to its device; list the devices this node does not hold."""
        with held_writes():  # a device's messages in this batch: one send
            absent = [m.device_id for m in request.messages if not self._push(m)]
        metrics.CONNECT_PUSHES.labels("delivered").inc(len(request.messages) - len(absent))
        metrics.CONNECT_PUSHES.labels("no_connection").inc(len(absent))
        if absent:
            _log.info("deliver_no_connection", device_ids=absent[:20], absent=len(absent))
        return connect_int_pb2.DeliverMessagesResp(absent_device_ids=absent)

    async def CloseConnection(
        self, request: connect_int_pb2.CloseConnectionReq, context: aio.ServicerContext[Any, Any]
    ) -> connect_int_pb2.CloseConnectionResp:
        """The device signed in on another node: close its connection here, if it is still
        the one logic replaced (a newer connection of the device stays). Its close does not
        mark the device offline: logic's row names the new connection now, and Offline
        compares client_addr."""
        session = self.registry.get(request.device_id)
        if session is None or session.client_addr != request.client_addr:
            # Logic may have answered this connection's sign-in and then the device's next
            # one elsewhere before this node bound it: a connection still signing in is
            # closed too (its sign-in then ends without taking the device).
            session = self._signing_in(request.client_addr)
        if session is None:
            _log.info("close_connection_absent", device_id=request.device_id, client_addr=request.client_addr)
            return connect_int_pb2.CloseConnectionResp(closed=False)
        session.replace("replaced by a connection of the same device on another node")
        return connect_int_pb2.CloseConnectionResp(closed=True)

    async def GetStats(
        self, request: connect_int_pb2.GetStatsReq, context: aio.ServicerContext[Any, Any]
    ) -> connect_int_pb2.GetStatsResp:
        """What this node holds (`gim admin nodes`)."""
        return connect_int_pb2.GetStatsResp(**self.registry.stats())

    def _signing_in(self, client_addr: str) -> Session | None:
        """The open connection with this client_addr that is not signed in yet, if any
        (rare: a look through every connection)."""
        conn_id = client_addr.rpartition("#")[2]
        if not conn_id.isdigit():
            return None
        cid = int(conn_id)  # compared first: a session builds its client_addr when asked
        return next(
            (
                s
                for s in self.registry.connections
                if s.conn_id == cid and s.client_addr == client_addr and not s.signed_in
            ),
            None,
        )
