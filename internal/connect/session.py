"""One client connection's protocol state, the same for TCP and WebSocket.

A transport hands the session complete packet bodies (`on_body`) and tells it when
the connection is gone (`on_closed`); the session answers through `Transport.send`
and `Transport.close`. Packets of one connection are handled in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol

from grpc import aio

from gim.internal.connect.codec import FrameError
from gim.internal.connect.packets import KNOWN_TYPES, Encoded, PacketError, output, parse_data, parse_input
from gim.internal.connect.pending import PendingByAddress
from gim.internal.connect.push_order import HeldTooMany, PushOrder
from gim.internal.connect.registry import Registry
from gim.internal.connect.sign_ins import SignIns
from gim.pkg import log, rpc
from gim.pkg.config import ConnectConfig
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc
from gim.pkg.ratelimit import networks

_log = log.get("connect")
# Connection ids start at a random point so that `client_addr` (peer#conn_id) of two
# nodes, or of one node before and after a restart, do not repeat.
_ids = itertools.count(random.randrange(1, 1 << 31))

# Packets waiting to be handled on one connection before it counts as a flood.
INBOX_LIMIT = 64
# A push that arrives ahead of its turn waits this long for the seqs before it (usually
# milliseconds behind, through another logic node), then they are fetched from logic.
GAP_WAIT = 1.0
FILL_PAGES = 10  # sync pages one gap fill reads at most (then it goes on after GAP_WAIT)
FILL_TRIES = 5  # gap fills in a row that logic does not answer before the connection is closed
# A client syncs right after signing in, and asks for the next page at once when a sync
# answer said has_more: pushes wait for that sync at most this long (see push_order.py),
# for a client that does not (a loaded client can take a moment to send it).
SYNC_STALL = 2.0


def _kind(exc: Exception) -> str:
    """A failure's kind, for summarised logs: the gim code or gRPC status, or its type."""
    if isinstance(exc, GimError):
        return str(int(exc.code))
    return exc.code().name if isinstance(exc, aio.AioRpcError) else type(exc).__name__


def _wire_code(code: Code) -> int:
    """The long connection keeps the codes of 2021: "temporarily unavailable, retry"
    (10002 over gRPC) is 10001 there, which clients take as "try again, maybe elsewhere"."""
    return int(Code.BAD_REQUEST if code == Code.UNAVAILABLE else code)


def _reason(exc: Exception) -> str:
    return exc.details() or "" if isinstance(exc, aio.AioRpcError) else str(exc)


class Transport(Protocol):
    peer: str  # "ip:port" of the client

    def send(self, out: Encoded) -> None:
        """Queue one encoded Output for the client; never blocks."""

    def close(self) -> None:
        """Close after what is queued has been written (aborted after close_timeout)."""


class ShuttingDown(Exception):
    """Sign-in refused: this node is stopping."""


@dataclasses.dataclass
class Node:
    """What every session of this connect node shares."""

    config: ConnectConfig
    logic: logic_int_pb2_grpc.LogicIntStub
    registry: Registry
    conn_addr: str
    # LogicInt.Sync answering raw bytes: SyncResp and SyncOutput are the same on the wire
    # (messages = 1, has_more = 2), so the answer is passed on without parsing it.
    sync_raw: Any = None
    stopping: bool = False
    tasks: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)
    _device_locks: dict[int, tuple[asyncio.Lock, list[int]]] = dataclasses.field(default_factory=dict)
    _sign_ins: int = 0
    _no_sign_ins: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ack_failures: log.Summary = dataclasses.field(default_factory=lambda: log.Summary(_log))

    sign_ins: SignIns = dataclasses.field(init=False)
    pending: PendingByAddress = dataclasses.field(init=False)  # connections not signed in, per address

    def __post_init__(self) -> None:
        self._no_sign_ins.set()
        self.sign_ins = SignIns(self.logic, self.config.rpc_timeout)
        self.pending = PendingByAddress(self.config.max_pending_per_address, networks(self.config.limit_exempt))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @contextlib.asynccontextmanager
    async def signing_in(self, device_id: int) -> AsyncIterator[None]:
        """One sign-in of a device at a time on this node, none once stopping.

        Serializing per device makes "ConnSignIn at logic, then bind here" atomic, so
        that the device's connection here is always the one logic recorded last.
        """
        if self.stopping:
            raise ShuttingDown
        self._sign_ins += 1
        self._no_sign_ins.clear()
        lock, users = self._device_locks.setdefault(device_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if self.stopping:
                    raise ShuttingDown
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._device_locks[device_id]
            self._sign_ins -= 1
            if not self._sign_ins:
                self._no_sign_ins.set()

    async def sign_ins_done(self, timeout: float) -> None:
        """Wait (bounded) for sign-ins already talking to logic."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_sign_ins.wait(), timeout)


class Session:
    # Memory per connection matters (tens of thousands per process): no __dict__, no
    # inbox until packets queue up, a logger built only when something is logged.
    __slots__ = (
        "transport", "node", "conn_id", "client_addr", "user_id", "device_id", "room_id", "closed",
        "replaced", "_inbox", "_worker", "_signing_in", "last_active", "_deadline", "order", "_gap", "_pending",
        "_ack",
    )  # fmt: skip

    def __init__(self, transport: Transport, node: Node, pending: str | None = None) -> None:
        """`pending`: the client host counted in `node.pending` for this connection, which
        leaves that count when it signs in or closes."""
        self.transport = transport
        self.node = node
        self.conn_id = next(_ids)
        # Unique per connection, so that logic's Offline for an old connection of a
        # device never matches the new one (ConnSignIn/Offline compare client_addr).
        self.client_addr = f"{transport.peer}#{self.conn_id}"
        self.user_id = 0
        self.device_id = 0
        self.room_id = 0
        self.closed = False
        self.replaced = False
        self._inbox: deque[cx.Input] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._signing_in = False
        self._ack: cx.MessageACK | None = None  # the highest ack waiting in the inbox
        self.order: PushOrder | None = None  # the device's push order, once signed in
        self._gap: asyncio.TimerHandle | asyncio.Task[None] | None = None  # a gap being waited for or filled
        self._pending = pending
        loop = asyncio.get_running_loop()
        self.last_active = loop.time()
        self._deadline: asyncio.TimerHandle | None = loop.call_later(node.config.sign_in_timeout, self._sign_in_expired)
        node.registry.connections.add(self)
        self.log.info("conn_opened")

    @property
    def log(self) -> Any:
        """The logger, bound to this connection's ids."""
        if self.device_id:
            return _log.bind(
                conn_id=self.conn_id, client_addr=self.client_addr, user_id=self.user_id, device_id=self.device_id
            )
        return _log.bind(conn_id=self.conn_id, client_addr=self.client_addr)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._pending is not None:  # signed in or closed: no longer pending
            self.node.pending.release(self._pending)
            self._pending = None

    @property
    def signed_in(self) -> bool:
        return self.device_id != 0

    # -- input ---------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        """A complete packet body arrived."""
        if self.closed:
            return
        self.last_active = asyncio.get_running_loop().time()
        try:
            packet = parse_input(body)
        except PacketError as exc:
            self.fail(Code.BAD_REQUEST, str(exc))
            return
        if packet.type == cx.PT_HEARTBEAT and self.signed_in and self._worker is None:
            self.reply(packet)
            return
        if packet.type == cx.PT_MESSAGE and self.signed_in and not self._queue_ack(packet.data):
            return  # merged into the ack already waiting (or not an ack at all)
        if self._inbox is None:
            self._inbox = deque()
        if len(self._inbox) >= INBOX_LIMIT:
            self.fail(Code.BAD_REQUEST, "too many packets waiting: slow down")
            return
        if packet.type == cx.PT_SYNC and self.order is not None:
            self.order.syncing = self.order.asking = True  # from now: pushes wait for its answer
        self._inbox.append(packet)
        if self._worker is None:
            self._worker = self.node.spawn(self._drain())

    async def _drain(self) -> None:
        """Handle waiting packets in order; once closed, only acks are still sent to logic."""
        try:
            while self._inbox:
                packet = self._inbox.popleft()
                if not self.closed or (packet.type == cx.PT_MESSAGE and self.signed_in):
                    await self._handle(packet)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("packet_failed")
            self.close("internal error")
        finally:
            self._worker = None
            self._inbox = None  # packets come rarely: no idle deque per connection

    async def _handle(self, packet: cx.Input) -> None:
        """One packet; a bad packet or a refused request is answered, the connection stays."""
        try:
            await self._dispatch(packet)
        except PacketError as exc:
            self.reply(packet, code=Code.BAD_REQUEST, message=str(exc))
        except GimError as exc:
            self.reply(packet, code=_wire_code(exc.code), message=exc.message)
        except aio.AioRpcError as exc:
            self.log.warning("logic_call_failed", type=packet.type, status=exc.code().name)
            self.reply(packet, code=Code.BAD_REQUEST, message=f"temporarily unavailable ({exc.code().name}), retry")

    async def _dispatch(self, packet: cx.Input) -> None:
        if not self.signed_in:
            if packet.type == cx.PT_SIGN_IN:
                sign_in = parse_data(cx.SignInInput, packet.data)
                await self.sign_in(sign_in.user_id, sign_in.device_id, sign_in.token, packet.request_id)  # type: ignore[attr-defined]
            else:
                self.fail(Code.UNAUTHORIZED, "sign in first", packet.type, packet.request_id)
            return
        if packet.type not in KNOWN_TYPES:
            self.reply(packet, code=Code.BAD_REQUEST, message=f"unknown package type {packet.type}")
        elif packet.type == cx.PT_HEARTBEAT:
            self.reply(packet)
        elif packet.type == cx.PT_SIGN_IN:
            self.reply(packet, code=Code.BAD_REQUEST, message="already signed in")
        elif packet.type == cx.PT_SYNC:
            await self._sync(packet)
        elif packet.type == cx.PT_MESSAGE:
            await self._send_ack(packet)
        elif packet.type == cx.PT_SUBSCRIBE_ROOM:
            await self._subscribe_room(packet)

    async def _call(self, method: Any, request: Any) -> Any:
        return await rpc.call(method, request, self.node.config.rpc_timeout, wait_for_ready=True)

    async def sign_in(self, user_id: int, device_id: int, token: str, request_id: int = 0) -> bool:
        """Authenticate through logic and take over the device; False if refused."""
        if self._signing_in or self.signed_in:
            return False
        if not (0 < user_id < 2**63 and 0 < device_id < 2**63):
            self.fail(
                Code.UNAUTHORIZED, "user_id and device_id must be positive 64-bit numbers", cx.PT_SIGN_IN, request_id
            )
            return False
        self._signing_in = True
        try:
            async with self.node.signing_in(device_id):
                return await self._sign_in(user_id, device_id, token, request_id)
        except ShuttingDown:
            self.fail(
                Code.BAD_REQUEST, "server is shutting down: connect again (to another node)", cx.PT_SIGN_IN, request_id
            )
            return False
        finally:
            self._signing_in = False

    async def _sign_in(self, user_id: int, device_id: int, token: str, request_id: int) -> bool:
        if self.closed:  # the client left while waiting for the device's previous sign-in
            return False
        req = logic_int_pb2.ConnSignInReq(
            user_id=user_id,
            device_id=device_id,
            token=token,
            conn_addr=self.node.conn_addr,
            client_addr=self.client_addr,
        )
        try:
            max_seq = await self.node.sign_ins.sign_in(req)
        except GimError as exc:
            self.fail(_wire_code(exc.code), exc.message, cx.PT_SIGN_IN, request_id)
            return False
        except aio.AioRpcError as exc:
            self.log.warning("sign_in_unavailable", status=exc.code().name)
            message = f"sign-in temporarily unavailable ({exc.code().name}): connect again later"
            self.fail(Code.BAD_REQUEST, message, cx.PT_SIGN_IN, request_id)
            return False
        if self.closed:  # the client left while logic was answering
            self.node.spawn(self._offline(user_id, device_id))
            return False
        self._cancel_deadline()
        self.user_id, self.device_id = user_id, device_id
        self.order = PushOrder(max_seq) if max_seq is not None else None
        if self.order is not None:
            # Pushes wait for the client's first sync: one shown before it would move the
            # client's position (the highest seq it has) past the messages the sync is for.
            self.order.syncing = True
        old = self.node.registry.bind(device_id, self)
        if old is not None:
            old.replaced = True
            old.close("replaced by a new connection of the same device")
        self.transport.send(Encoded(output(cx.PT_SIGN_IN, request_id)))
        self.log.info("signed_in", replaced_conn_id=old.conn_id if old else None)
        return True

    async def _sync(self, packet: cx.Input) -> None:
        sync = parse_data(cx.SyncInput, packet.data)
        req = logic_int_pb2.SyncReq(user_id=self.user_id, device_id=self.device_id, seq=sync.seq)  # type: ignore[attr-defined]
        order = self.order
        if order is not None:
            order.syncing = order.asking = True  # pushes wait for the answer (see push_order.py)
        try:
            if self.node.sync_raw is not None:
                data = await self._call(self.node.sync_raw, req)
            else:
                resp = await self._call(self.node.logic.Sync, req)
                data = cx.SyncOutput(messages=resp.messages, has_more=resp.has_more).SerializeToString()
        except BaseException:
            if order is not None:
                order.asking = False
                self._write_pushes(order.stop_syncing())
            raise
        if order is not None:
            order.asking = False
        self.reply(packet, data=data)
        if order is not None:
            answer = cx.SyncOutput.FromString(data)
            highest = answer.messages[-1].seq if answer.messages else 0
            self._write_pushes(order.synced(highest, answer.has_more))

    def _queue_ack(self, data: bytes) -> bool:
        """An ack arrived: True to queue it; False when it went into the ack already
        waiting in the inbox (clients ack every push and only the highest counts, so a
        slow logic never makes a client's acks fill the inbox) or is not an ack."""
        try:
            ack = parse_data(cx.MessageACK, data)
        except PacketError as exc:
            self.node.ack_failures.warning(
                "ack_dropped", kind=_kind(exc), reason=_reason(exc), device_id=self.device_id
            )
            return False
        if self._ack is None:
            self._ack = ack
            return True
        if ack.device_ack > self._ack.device_ack:  # type: ignore[attr-defined]
            self._ack = ack
        return False

    async def _send_ack(self, packet: cx.Input) -> None:
        """Pass the waiting ack on to logic. An ack is never answered (as in 2021: clients
        take every downstream PT_MESSAGE for a push), not even when it fails: a lost ack is
        corrected by the device's next ack or sync, so a failure is only logged
        (summarised)."""
        try:
            ack, self._ack = self._ack or parse_data(cx.MessageACK, packet.data), None
            req = logic_int_pb2.MessageACKReq(
                user_id=self.user_id,
                device_id=self.device_id,
                device_ack=ack.device_ack,  # type: ignore[attr-defined]
                receive_time=ack.receive_time,  # type: ignore[attr-defined]
            )
            await self._call(self.node.logic.MessageACK, req)
        except (PacketError, GimError, aio.AioRpcError) as exc:
            self.node.ack_failures.warning(
                "ack_dropped", kind=_kind(exc), reason=_reason(exc), device_id=self.device_id
            )

    async def _subscribe_room(self, packet: cx.Input) -> None:
        """Join one room (leaving any other), or leave with room_id 0; replay if seq > 0."""
        sub = parse_data(cx.SubscribeRoomInput, packet.data)
        room_id, seq = sub.room_id, sub.seq  # type: ignore[attr-defined]
        if room_id < 0 or seq < 0:
            raise PacketError("room_id and seq must not be negative")
        self._set_room(room_id)
        self.log.debug("room_subscribed", room_id=room_id, seq=seq)
        if room_id and seq > 0:
            # Logic pushes the kept messages after `seq` to this device through
            # ConnectInt before it answers, so they arrive before the reply.
            req = logic_int_pb2.SubscribeRoomReq(
                user_id=self.user_id, device_id=self.device_id, room_id=room_id, seq=seq, conn_addr=self.node.conn_addr
            )
            await self._call(self.node.logic.SubscribeRoom, req)
        self.reply(packet)

    def _set_room(self, room_id: int) -> None:
        registry = self.node.registry
        if self.room_id:
            registry.leave(self.room_id, self)
        self.room_id = room_id
        if room_id:
            registry.join(room_id, self)

    # -- output --------------------------------------------------------------------

    def reply(self, packet: cx.Input, code: int = 0, message: str = "", data: bytes = b"") -> None:
        self.transport.send(Encoded(output(packet.type, packet.request_id, code, message, data)))

    def push(self, message_send: bytes) -> None:
        """A message for this device (already serialized `MessageSend`)."""
        try:
            self.push_encoded(Encoded(output(cx.PT_MESSAGE, data=message_send)))
        except FrameError as exc:  # never from a current logic (messages fit by construction)
            self.log.warning("push_too_large", error=str(exc))

    def push_stored(self, seq: int, message_send: bytes) -> None:
        """A message stored for this device's user with `seq` (or, with empty
        `message_send`, the mark of a seq this device sent itself): written in seq order
        (see push_order.py); one that comes ahead of its turn waits for the seqs before it."""
        order = self.order
        if order is None:
            if message_send:
                self.push(message_send)
            return
        try:
            ready = order.offer(seq, message_send)
        except HeldTooMany as exc:
            self.log.warning("push_order_overflow", error=str(exc))
            self.close("too many pushes wait for a missing one: reconnect and sync")
            return
        self._write_pushes(ready)

    def _write_pushes(self, ready: list[bytes]) -> None:
        """Write what the push order let out, and keep a timer while pushes are held: the
        missing seqs are fetched after GAP_WAIT (SYNC_STALL while the client syncs)."""
        for data in ready:
            self.push(data)
        order = self.order
        if order is None or self.closed:
            return
        if order.waiting and self._gap is None:
            self._arm_gap(SYNC_STALL if order.syncing else GAP_WAIT)
        elif not order.waiting and isinstance(self._gap, asyncio.TimerHandle):
            self._gap.cancel()  # the missing ones came
            self._gap = None

    def _arm_gap(self, wait: float) -> None:
        self._gap = asyncio.get_running_loop().call_later(wait, self._fill_gap)

    def _fill_gap(self) -> None:
        self._gap = self.node.spawn(self._fetch_gap())

    async def _fetch_gap(self) -> None:
        """Fetch the seqs missing before the held pushes from logic (a sync from the last
        one given), then let everything out in order. If logic cannot answer, the held
        pushes go out anyway: the client's next sync brings what is missing."""
        order = self.order
        assert order is not None
        if order.asking:  # the client's own sync is with logic: its answer decides
            self._gap = None
            self._arm_gap(GAP_WAIT)
            return
        for data in order.stop_syncing() if order.syncing else ():  # the client stopped paging
            self.push(data)
        failed = False
        try:
            for _ in range(FILL_PAGES):
                if self.closed or not order.waiting:
                    break
                wanted = order.wanted
                req = logic_int_pb2.SyncReq(user_id=self.user_id, device_id=self.device_id, seq=order.last)
                resp = await self._call(self.node.logic.Sync, req)
                if order.syncing:  # the client asked itself meanwhile: its answer closes the gap
                    break
                synced = [
                    (m.seq, cx.MessageSend(message=m).SerializeToString()) for m in resp.messages if m.seq <= wanted
                ]
                reached = not resp.has_more or not resp.messages or resp.messages[-1].seq >= wanted
                for data in order.fill(synced, upto=wanted) if reached else order.advance(synced):
                    self.push(data)
                self.log.info("push_gap_filled", fetched=len(synced), last=order.last)
            order.failed_fills = 0
        except (GimError, aio.AioRpcError) as exc:
            failed = True
            order.failed_fills += 1
            self.log.warning("push_gap_fill_failed", error=_reason(exc), tries=order.failed_fills)
        finally:
            self._gap = None
        if self.closed or order.syncing or not order.waiting:
            return
        if failed and order.failed_fills >= FILL_TRIES:
            # Never skip what is missing (the client would sync past it): it reconnects
            # and syncs from what it has.
            self.close("the messages before a push could not be fetched: reconnect and sync")
        else:
            self._arm_gap(GAP_WAIT)

    def push_encoded(self, out: Encoded) -> None:
        """An Output encoded once for many connections (room and push-all broadcasts)."""
        if not self.closed:
            self.transport.send(out)

    def fail(self, code: int, message: str, package_type: int = cx.PT_UNKNOWN, request_id: int = 0) -> None:
        """Answer with an error code, then close the connection."""
        if self.closed:
            return
        self.transport.send(Encoded(output(package_type, request_id, int(code), message)))
        self.close(f"{int(code)}: {message}")

    def close(self, reason: str) -> None:
        if not self.closed:
            self.transport.close()
            self.on_closed(reason)

    def _sign_in_expired(self) -> None:
        """The sign-in deadline applies whatever the sign-in is doing: a connection still
        waiting for an earlier sign-in of its device (`Node.signing_in`) or for logic is
        closed too; a sign-in that logic completes afterwards is undone (`_sign_in`)."""
        if not self.signed_in:
            self.close("no sign-in in time" + (" (still signing in)" if self._signing_in else ""))

    # -- end -----------------------------------------------------------------------

    def on_closed(self, reason: str = "closed by client") -> None:
        """The connection is gone (either side); release the device and the room.

        Acks already received are still sent to logic (see `_drain`); anything else
        still waiting is dropped.
        """
        if self.closed:
            return
        self.closed = True
        self._cancel_deadline()
        if isinstance(self._gap, asyncio.TimerHandle):
            self._gap.cancel()
        self._gap = None
        self._set_room(0)
        registry = self.node.registry
        registry.connections.discard(self)
        if self.signed_in and registry.unbind(self.device_id, self) and not self.node.stopping:
            self.node.spawn(self._offline(self.user_id, self.device_id))
        self.log.info("conn_closed", reason=reason, replaced=self.replaced)

    async def _offline(self, user_id: int, device_id: int) -> None:
        req = logic_int_pb2.OfflineReq(user_id=user_id, device_id=device_id, client_addr=self.client_addr)
        try:
            await self._call(self.node.logic.Offline, req)
        except (GimError, aio.AioRpcError) as exc:
            self.log.warning("offline_failed", error=str(exc))
