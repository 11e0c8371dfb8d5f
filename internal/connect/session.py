"""One client connection: the asyncio adapter of the protocol state machine.

The transport (tcp.py, ws.py) hands the session the bytes it reads (`data_received`,
TCP) or one packet body per message (`on_body`, WebSocket) and tells it when the
connection is gone (`on_closed`). The session feeds its `Connection`
(gim.pkg.protocol.machine), which holds the protocol state, and executes the actions it
returns: writes through `Transport.send` and `Transport.close`, calls to logic as tasks
whose answers are fed back, timers on the loop, the node's registry, and the logs.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any, Protocol

from grpc import aio

from gim.internal.connect.context import ConnectContext, ShuttingDown
from gim.pkg import log, metrics, rpc
from gim.pkg.batcher import BatcherClosed
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2
from gim.pkg.protocol.actions import (
    Ack,
    Action,
    Answered,
    Bind,
    Call,
    CloseTransport,
    Ended,
    Failed,
    Log,
    MarkOffline,
    NodeStopping,
    Outcome,
    Refused,
    Send,
    SetRoom,
    SignIn,
    StartTimer,
    StopTimer,
    SubscribeRoom,
    Sync,
    SyncedHere,
    Timer,
    Unreachable,
)
from gim.pkg.protocol.frames import FrameDecoder
from gim.pkg.protocol.machine import Connection, State
from gim.pkg.protocol.packets import Encoded

_log = log.get("connect")
# Connection ids start at a random point so that `client_addr` (peer#conn_id) of two
# nodes, or of one node before and after a restart, do not repeat.
_ids = itertools.count(random.randrange(1, 1 << 31))


class Transport(Protocol):
    @property
    def peer(self) -> str:
        """ "ip:port" of the client."""

    def send(self, out: Encoded) -> None:
        """Queue one encoded Output for the client; never blocks."""

    def close(self) -> None:
        """Close after what is queued has been written (aborted after close_timeout)."""


class Session:
    # Memory per connection matters (tens of thousands per process): no __dict__, a
    # logger built only when something is logged.
    __slots__ = (
        "transport", "context", "machine", "conn_id", "_deadline", "_gap", "_pending", "_sign_in",
    )  # fmt: skip

    def __init__(
        self,
        transport: Transport,
        context: ConnectContext,
        pending: str | None = None,
        decoder: FrameDecoder | None = None,
    ) -> None:
        """`pending`: the client host counted in `context.pending` for this connection,
        which leaves that count when it signs in or closes; `decoder`: a TCP stream's."""
        self.transport = transport
        self.context = context
        self.conn_id = next(_ids)
        loop = asyncio.get_running_loop()
        self.machine = Connection(context.config.sign_in_timeout, decoder, now=loop.time())
        self._deadline: asyncio.TimerHandle | None = None
        self._gap: asyncio.TimerHandle | None = None
        self._pending = pending
        self._sign_in: asyncio.Task[None] | None = None
        context.registry.connections.add(self)
        self.log.info("conn_opened")
        self._execute(self.machine.open())

    # -- the machine's state, for the node ------------------------------------------

    @property
    def client_addr(self) -> str:
        """Unique per connection, so that logic's Offline for an old connection of a device
        never matches the new one (ConnSignIn/Offline compare client_addr). Built when
        asked: a string per connection held for its lifetime costs more than that."""
        return f"{self.transport.peer}#{self.conn_id}"

    @property
    def user_id(self) -> int:
        return self.machine.user_id

    @property
    def device_id(self) -> int:
        return self.machine.device_id

    @property
    def room_id(self) -> int:
        return self.machine.room_id

    @property
    def signed_in(self) -> bool:
        return self.machine.signed_in

    @property
    def closed(self) -> bool:
        return self.machine.closed

    @property
    def replaced(self) -> bool:
        return self.machine.state is State.REPLACED

    @property
    def last_active(self) -> float:
        return self.machine.last_active

    @property
    def log(self) -> Any:
        """The logger, bound to this connection's ids."""
        if self.device_id:
            return _log.bind(
                conn_id=self.conn_id, client_addr=self.client_addr, user_id=self.user_id, device_id=self.device_id
            )
        return _log.bind(conn_id=self.conn_id, client_addr=self.client_addr)

    # -- events in ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Bytes read from a TCP stream."""
        self._execute(self.machine.data_received(data, asyncio.get_running_loop().time()))

    def on_body(self, body: bytes) -> None:
        """A complete packet body arrived."""
        self._execute(self.machine.receive(body, asyncio.get_running_loop().time()))

    async def sign_in(self, user_id: int, device_id: int, token: str) -> bool:
        """Sign in without a packet (a legacy WebSocket query); False if refused."""
        self._execute(self.machine.sign_in(user_id, device_id, token))
        if self._sign_in is not None:
            await self._sign_in
        return self.signed_in

    def push(self, message_send: bytes) -> None:
        """A message for this device (already serialized `MessageSend`)."""
        self._execute(self.machine.push(message_send))

    def push_stored(self, seq: int, message_send: bytes) -> None:
        """A message stored for this device's user with `seq` (see Connection.push_stored)."""
        self._execute(self.machine.push_stored(seq, message_send))

    def missed_push(self) -> None:
        """A push for this device reached the node while this connection was signing in
        (before it was bound): see `Connection.missed_push`."""
        self.machine.missed_push()

    def push_encoded(self, out: Encoded) -> None:
        """An Output encoded once for many connections (room and push-all broadcasts)."""
        if not self.machine.closed:
            self.transport.send(out)

    def fail(self, code: int, message: str) -> None:
        """Answer with an error code, then close the connection."""
        self._execute(self.machine.fail(code, message))

    def close(self, reason: str) -> None:
        self._execute(self.machine.close(reason))

    def replace(self, reason: str) -> None:
        """Close: the device connected again (on this node or another)."""
        self._execute(self.machine.replace(reason))

    def on_closed(self, reason: str = "closed by client") -> None:
        """The connection is gone (either side)."""
        self._execute(self.machine.transport_closed(reason))

    # -- actions out --------------------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is Send:  # most of them
                self.transport.send(action.out)
            elif type(action) is Ack:  # one per message received: no task
                self._ack(action)
            elif isinstance(action, (Sync, SubscribeRoom)):
                self.context.spawn(self._ask(action))
            elif isinstance(action, SignIn):
                self._sign_in = self.context.spawn(self._sign_in_at_logic(action))
            elif isinstance(action, StartTimer):
                self._start_timer(action)
            elif isinstance(action, StopTimer):
                self._stop_timer(action.timer)
            elif isinstance(action, Log):
                self._log(action)
            elif isinstance(action, Bind):
                self._bind()
            elif isinstance(action, SetRoom):
                registry = self.context.registry
                if action.leave:
                    registry.leave(action.leave, self)
                if action.join:
                    registry.join(action.join, self)
            elif isinstance(action, CloseTransport):
                self.transport.close()
            elif isinstance(action, Ended):
                self._ended(action)
            elif isinstance(action, MarkOffline):
                self.context.spawn(self._offline(action.user_id, action.device_id))
            elif isinstance(action, SyncedHere):
                metrics.CONNECT_SYNC_PAGES.labels("connect").inc()

    def _start_timer(self, action: StartTimer) -> None:
        self._stop_timer(action.timer)
        handle = asyncio.get_running_loop().call_later(action.seconds, self._timer_fired, action.timer)
        if action.timer is Timer.SIGN_IN:
            self._deadline = handle
        else:
            self._gap = handle

    def _stop_timer(self, timer: Timer) -> None:
        handle = self._deadline if timer is Timer.SIGN_IN else self._gap
        if handle is not None:
            handle.cancel()
        if timer is Timer.SIGN_IN:
            self._deadline = None
        else:
            self._gap = None

    def _timer_fired(self, timer: Timer) -> None:
        if timer is Timer.SIGN_IN:
            self._deadline = None
        else:
            self._gap = None
        self._execute(self.machine.timer_fired(timer))

    def _log(self, action: Log) -> None:
        if action.summarised:
            fields = dict(action.fields)
            kind = str(fields.pop("kind"))
            self.context.ack_failures.warning(action.event, kind=kind, **fields)
        else:
            getattr(self.log, action.level)(action.event, **action.fields)

    def _release_pending(self) -> None:
        if self._pending is not None:  # signed in or closed: no longer pending
            self.context.pending.release(self._pending)
            self._pending = None

    def _bind(self) -> None:
        """Take the device on this node; its previous connection here is replaced."""
        self._release_pending()
        old = self.context.registry.bind(self.device_id, self)
        if old is not None:
            old.replace("replaced by a new connection of the same device")
        self.log.info("signed_in", replaced_conn_id=old.conn_id if old else None)

    def _ended(self, action: Ended) -> None:
        """Release the pending count, the registry entry, the pages read ahead and the device."""
        self._release_pending()
        context = self.context
        context.read_aheads.drop(self.conn_id)
        registry = context.registry
        registry.connections.discard(self)
        if action.device_id and registry.unbind(action.device_id, self) and not context.stopping:
            context.spawn(self._offline(action.user_id, action.device_id))
        self.log.info("conn_closed", reason=action.reason, replaced=action.replaced)

    # -- calls to logic -------------------------------------------------------------

    async def _call(self, method: Any, request: Any) -> Any:
        return await rpc.call(method, request, self.context.config.rpc_timeout, wait_for_ready=True)

    async def _ask(self, call: Sync | SubscribeRoom) -> None:
        outcome = await self._outcome(call, self._perform(call))
        self._answered(call, outcome)

    async def _sign_in_at_logic(self, call: SignIn) -> None:
        """ConnSignIn at logic, then bind here, one sign-in of the device at a time on this
        node (`ConnectContext.signing_in`): the device's connection here is always the one
        logic recorded last."""
        try:
            async with self.context.signing_in(call.device_id, self):  # pushes meanwhile are noted on it
                if self.machine.closed:  # the client left while waiting for the device's previous sign-in
                    outcome: Outcome = Failed("closed before logic was asked")
                else:
                    req = logic_int_pb2.ConnSignInReq(
                        user_id=call.user_id,
                        device_id=call.device_id,
                        token=call.token,
                        conn_addr=self.context.conn_addr,
                        client_addr=self.client_addr,
                    )
                    outcome = await self._outcome(call, self.context.sign_ins.sign_in(req))
                    metrics.CONNECT_SIGN_INS.labels(metrics.sign_in_result(outcome)).inc()
                self._answered(call, outcome)
        except ShuttingDown:
            self._answered(call, NodeStopping())
        finally:
            self._sign_in = None

    def _answered(self, call: Call, outcome: Outcome) -> None:
        """Feed logic's answer to the machine and execute what follows; a bug there closes
        the connection (logged) instead of leaving it waiting for an answer it got."""
        try:
            self._execute(self.machine.answered(call, outcome))
        except Exception:
            self.log.exception("packet_failed")
            self.close("internal error")

    async def _outcome(self, call: Call, answer: Any) -> Outcome:
        """How awaiting logic's `answer` to `call` went."""
        try:
            return Answered(await answer)
        except asyncio.CancelledError:
            self._execute(self.machine.answered(call, Failed("cancelled")))
            raise
        except Exception as exc:
            return self._failure(exc)

    def _failure(self, exc: BaseException) -> Outcome:
        if isinstance(exc, BatcherClosed):  # the node is stopping: its call was cancelled
            return Failed("cancelled")
        if isinstance(exc, GimError):
            return Refused(int(exc.code), exc.message)
        if isinstance(exc, aio.AioRpcError):
            return Unreachable(exc.code().name, exc.details() or "")
        self.log.error("packet_failed", exc_info=exc)
        return Failed(repr(exc))

    def _ack(self, call: Ack) -> None:
        """The ack to logic in the node's merged MessageACKs calls; the machine hears how
        it went from the call's future (a task per ack costs more than the ack)."""
        req = logic_int_pb2.MessageACKReq(
            user_id=call.user_id, device_id=call.device_id, device_ack=call.device_ack, receive_time=call.receive_time
        )
        answer = self.context.acks.enqueue(req)
        answer.add_done_callback(lambda done: self._answered(call, self._settled(done)))

    def _settled(self, answer: asyncio.Future[Any]) -> Outcome:
        if answer.cancelled():
            return Failed("cancelled")
        exc = answer.exception()
        return Answered(answer.result()) if exc is None else self._failure(exc)

    async def _perform(self, call: Sync | SubscribeRoom) -> bytes | None:
        context = self.context
        if isinstance(call, Sync):
            return await self._sync(call)
        sub = logic_int_pb2.SubscribeRoomReq(
            user_id=call.user_id,
            device_id=call.device_id,
            room_id=call.room_id,
            seq=call.seq,
            conn_addr=context.conn_addr,
        )
        await self._call(context.logic.SubscribeRoom, sub)
        return None

    async def _sync(self, call: Sync) -> bytes:
        """A serialized SyncOutput: a client's PT_SYNC answered from the pages read ahead
        for this connection (read_ahead.py), else by logic, with the next pages read ahead
        when the node holds few; a gap fill always by logic, exactly from the connection's
        position, also at 0 (a client's PT_SYNC from 0 means "after the highest ack of the
        user's devices")."""
        context = self.context
        ahead = context.read_aheads
        loop = asyncio.get_running_loop()
        if not call.fill and (page := await ahead.take(self.conn_id, call.seq, loop.time())) is not None:
            metrics.CONNECT_SYNC_PAGES.labels("read_ahead").inc()
            self._read_further(call)
            return page
        if self.machine.closed:  # gone while this waited for pages being read ahead: nobody to ask for
            return b""
        ahead_pages = context.config.sync_read_ahead
        pages = 1 + ahead_pages if ahead_pages and not call.fill and ahead.has_room(loop.time()) else 0
        req = logic_int_pb2.SyncReq(
            user_id=call.user_id, device_id=call.device_id, seq=call.seq, exact=call.fill, pages=pages
        )
        metrics.CONNECT_SYNC_PAGES.labels("logic").inc()
        if not pages and context.sync_raw is not None:  # SyncResp and SyncOutput are the same on the wire
            data: bytes = await self._call(context.sync_raw, req)
            return data
        resp = await self._sync_resp(req)
        if not resp.pages:  # a logic node without read-ahead answers one page, as for a 2021 client
            return cx.SyncOutput(messages=resp.messages, has_more=resp.has_more).SerializeToString()
        if self.machine.closed:
            return resp.pages[0]
        first = ahead.hold(self.conn_id, resp, loop.time())
        self._read_further(call)
        return first

    async def _sync_resp(self, req: logic_int_pb2.SyncReq) -> logic_int_pb2.SyncResp:
        context = self.context
        if context.sync_raw is None:
            resp: logic_int_pb2.SyncResp = await self._call(context.logic.Sync, req)
            return resp
        return logic_int_pb2.SyncResp.FromString(await self._call(context.sync_raw, req))

    def _read_further(self, call: Sync) -> None:
        """Ask for the pages after those held, if few are left, while the client reads them."""
        after = self.context.read_aheads.due(self.conn_id, asyncio.get_running_loop().time())
        if after:
            self.context.spawn(self._ask_further(call, after))

    async def _ask_further(self, call: Sync, after: int) -> None:
        ahead = self.context.read_aheads
        req = logic_int_pb2.SyncReq(
            user_id=call.user_id,
            device_id=call.device_id,
            seq=after,
            exact=True,
            pages=1 + self.context.config.sync_read_ahead,
        )
        extended = False
        try:
            resp = await self._sync_resp(req)
            if resp.pages and not self.machine.closed:
                ahead.extend(self.conn_id, after, resp, asyncio.get_running_loop().time())
                extended = True
        except Exception as exc:  # the client's PT_SYNC for these pages goes to logic instead
            self.log.info("read_ahead_failed", seq=after, error=str(exc))
        finally:
            if not extended:  # failed, cancelled, or nothing: a PT_SYNC waiting for these goes to logic
                ahead.failed(self.conn_id, after)

    async def _offline(self, user_id: int, device_id: int) -> None:
        req = logic_int_pb2.OfflineReq(user_id=user_id, device_id=device_id, client_addr=self.client_addr)
        try:
            await self.context.offlines.done(req)  # merged with the node's other connections gone
        except (GimError, aio.AioRpcError) as exc:
            self.log.warning("offline_failed", error=str(exc))
