"""The server side of one long connection, as a state machine without I/O.

Bytes and events go in (`data_received` for a TCP stream, `receive` for one WebSocket
message, `answered` when logic answers a call, `timer_fired`, the pushes, `close`,
`transport_closed`); every method returns the actions to execute, in order
(`actions.py`): send bytes, close, call logic, start or stop a timer, bind the device,
join a room, mark offline, log. There are no sockets, tasks, timers or gRPC in here: an
adapter (connect's `Session`) executes the actions and feeds the answers back.

States (`State`):

    CONNECTED --PT_SIGN_IN--> SIGNING_IN --answered--> SIGNED_IN
        |                        |  refused: the error, then CLOSED
        +--- deadline, error, close, transport gone ---> CLOSED | REPLACED

Packets of one connection are handled in order. One request at a time is with logic
(a sign-in, a sync, a room subscription); packets arriving meanwhile wait in the inbox
(at most INBOX_LIMIT: past it the client is a flood and is closed). A heartbeat with
nothing waiting is answered at once. Acks, which are never answered, go beside them
(a client acks each page of a sync before asking for the next: the next page does not
wait for the ack): one ack at a time with logic, those arriving meanwhile merged into one
waiting (only the highest counts). Once closed, a waiting ack still goes to logic;
nothing else does.

Pushes of stored messages pass the device's `PushOrder` (push_order.py): in seq order,
held while the client syncs, and a gap (a push ahead of its turn) is fetched from logic
after GAP_WAIT by the connection itself (a `Sync` call with `fill`), at most FILL_PAGES
pages at a time; after FILL_TRIES failed fills in a row the connection closes, so that the
client reconnects and syncs (nothing is ever skipped).
"""

from __future__ import annotations

import enum
from collections import deque

from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
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
from gim.pkg.protocol.frames import FRAME_MAX, FrameDecoder, FrameError
from gim.pkg.protocol.packets import KNOWN_TYPES, Encoded, PacketError, output, parse_data, parse_input
from gim.pkg.protocol.push_order import HeldTooMany, PushOrder

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


class State(enum.Enum):
    CONNECTED = "connected"  # open, not signed in: the sign-in deadline runs
    SIGNING_IN = "signing_in"  # a sign-in is with logic
    SIGNED_IN = "signed_in"  # the device's connection
    CLOSED = "closed"
    REPLACED = "replaced"  # closed because the device connected again (here or elsewhere)


class _Gap(enum.Enum):
    NONE = 0
    WAITING = 1  # the GAP timer runs
    FILLING = 2  # a fill's Sync is with logic


# The members, looked up once: `State.X` goes through the enum's metaclass, which costs
# more than the rest of a heartbeat's handling.
_CONNECTED, _SIGNING_IN, _SIGNED_IN = State.CONNECTED, State.SIGNING_IN, State.SIGNED_IN
_CLOSED, _REPLACED = State.CLOSED, State.REPLACED
_GAP_NONE, _GAP_WAITING, _GAP_FILLING = _Gap.NONE, _Gap.WAITING, _Gap.FILLING


def wire_code(code: int) -> int:
    """The long connection keeps the codes of 2021: "temporarily unavailable, retry"
    (10002 over gRPC) is 10001 there, which clients take as "try again, maybe elsewhere"."""
    return int(Code.BAD_REQUEST if code == Code.UNAVAILABLE else code)


def _kind(outcome: Outcome) -> str:
    """A failure's kind, for summarised logs: the gim code or gRPC status."""
    if isinstance(outcome, Refused):
        return str(outcome.code)
    return outcome.status if isinstance(outcome, Unreachable) else type(outcome).__name__


def _reason(outcome: Outcome) -> str:
    if isinstance(outcome, Refused):
        return outcome.message
    if isinstance(outcome, Unreachable):
        return outcome.details
    return outcome.error if isinstance(outcome, Failed) else ""


class Connection:
    """One long connection's protocol state (the same for TCP and WebSocket)."""

    # tens of thousands per process: no __dict__, no inbox until packets queue up
    __slots__ = (
        "state", "user_id", "device_id", "room_id", "order", "last_active", "_decoder", "_sign_in_timeout",
        "_inbox", "_request", "_acking", "_ack", "_gap", "_fill", "_fill_pages", "_fill_wanted", "_missed_push",
    )  # fmt: skip

    def __init__(self, sign_in_timeout: float, decoder: FrameDecoder | None = None, now: float = 0.0) -> None:
        """`decoder`: a TCP stream's (for `data_received`); `now`: the clock at opening."""
        self.state = _CONNECTED
        self.user_id = 0
        self.device_id = 0  # set once signed in, kept after closing
        self.room_id = 0
        self.order: PushOrder | None = None  # the device's push order, once signed in (if logic said its seq)
        self.last_active = now  # when the last complete packet arrived
        self._decoder = decoder
        self._sign_in_timeout = sign_in_timeout
        self._inbox: deque[cx.Input] | None = None
        self._request: tuple[Call, cx.Input] | None = None  # the packet whose call is with logic
        self._acking: Ack | None = None  # the ack with logic
        self._ack: cx.MessageACK | None = None  # the highest ack waiting for it
        self._gap = _GAP_NONE
        self._fill: Sync | None = None  # the gap fill's call with logic
        self._fill_pages = 0
        self._fill_wanted = 0
        self._missed_push = False  # a push for the device came while this was signing in

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED or self.state is _REPLACED

    @property
    def signed_in(self) -> bool:
        return self.state is _SIGNED_IN

    @property
    def busy(self) -> bool:
        """A request of this connection is with logic."""
        return self._request is not None

    # -- events in ----------------------------------------------------------------

    def open(self) -> list[Action]:
        """The connection was accepted."""
        return [StartTimer(Timer.SIGN_IN, self._sign_in_timeout)]

    def data_received(self, data: bytes, now: float) -> list[Action]:
        """Bytes read from a TCP stream (any number of frames, or part of one)."""
        if self.closed:
            return []
        assert self._decoder is not None, "a TCP connection has a FrameDecoder"
        try:
            bodies = self._decoder.feed(data)
        except FrameError as exc:
            return self.fail(Code.BAD_REQUEST, str(exc))
        out: list[Action] = []
        for body in bodies:
            self._receive(out, body, now)
        return out

    def receive(self, body: bytes, now: float) -> list[Action]:
        """One complete packet body (a WebSocket message)."""
        out: list[Action] = []
        self._receive(out, body, now)
        return out

    def sign_in(self, user_id: int, device_id: int, token: str, request_id: int = 0) -> list[Action]:
        """Sign in without a packet (a legacy WebSocket client's query parameters); no
        action if a sign-in was already made."""
        out: list[Action] = []
        self._sign_in(out, cx.Input(type=cx.PT_SIGN_IN, request_id=request_id), user_id, device_id, token)
        return out

    def answered(self, call: Call, outcome: Outcome) -> list[Action]:
        """Logic answered `call` (or could not be asked)."""
        out: list[Action] = []
        if call is self._fill:
            self._fill_answered(out, outcome)
        elif call is self._acking:
            self._acking = None
            if not isinstance(outcome, Answered):
                self._ack_dropped(out, _kind(outcome), _reason(outcome))
            if self._ack is not None and self.device_id:
                self._send_ack(out, self._ack)
            if self._request is not None and self._request[0] is call:  # a sync from 0 waits for the acks
                packet = self._request[1]
                self._request = None if self._acking is None else (self._acking, packet)
                if self._request is None and not self.closed:
                    self._sync(out, packet)
                    self._next(out)
        elif self._request is not None and call is self._request[0]:
            packet = self._request[1]
            self._request = None
            if isinstance(outcome, Failed):  # the rest of the inbox is dropped too
                self._inbox = None
                self._close(out, "internal error")
                return out
            if isinstance(call, SignIn):
                self._signed_in(out, call, packet, outcome)
            elif isinstance(call, Sync):
                self._synced(out, packet, outcome)
            elif isinstance(outcome, Answered):  # SubscribeRoom
                self._reply(out, packet)
            else:
                self._refused(out, packet, outcome)
            self._next(out)
        return out

    def timer_fired(self, timer: Timer) -> list[Action]:
        out: list[Action] = []
        if timer is Timer.SIGN_IN:
            # the deadline applies whatever the sign-in is doing: a sign-in that logic
            # completes afterwards is undone (MarkOffline)
            if self.state is _CONNECTED or self.state is _SIGNING_IN:
                still = " (still signing in)" if self.state is _SIGNING_IN else ""
                self._close(out, "no sign-in in time" + still)
        elif self._gap is _GAP_WAITING and not self.closed:
            self._start_fill(out)
        return out

    def push(self, message_send: bytes) -> list[Action]:
        """A message for this device (a serialized `MessageSend`), outside any order."""
        out: list[Action] = []
        self._push(out, message_send)
        return out

    def push_stored(self, seq: int, message_send: bytes) -> list[Action]:
        """A message stored for this device's user with `seq` (or, with empty
        `message_send`, the mark of a seq this device sent itself): written in seq order;
        one that comes ahead of its turn waits for the seqs before it."""
        out: list[Action] = []
        order = self.order
        if order is None:
            if message_send:
                self._push(out, message_send)
            return out
        try:
            ready = order.offer(seq, message_send)
        except HeldTooMany as exc:
            self._log(out, "warning", "push_order_overflow", error=str(exc))
            self._close(out, "too many pushes wait for a missing one: reconnect and sync")
            return out
        self._write_pushes(out, ready)
        return out

    def missed_push(self) -> None:
        """A push for this device reached the node while this connection was signing in,
        before it took the device: its client's first sync goes to logic, which has that
        message (connect answers "nothing more" itself only when nothing can be missing)."""
        self._missed_push = True

    def push_encoded(self, encoded: Encoded) -> list[Action]:
        """An Output encoded once for many connections (room and push-all broadcasts)."""
        return [] if self.closed else [Send(encoded)]

    def fail(self, code: int, message: str, package_type: int = cx.PT_UNKNOWN, request_id: int = 0) -> list[Action]:
        """Answer with an error code, then close the connection."""
        out: list[Action] = []
        self._fail(out, code, message, package_type, request_id)
        return out

    def close(self, reason: str) -> list[Action]:
        out: list[Action] = []
        self._close(out, reason)
        return out

    def replace(self, reason: str) -> list[Action]:
        """Close: the device connected again (on this node or another)."""
        out: list[Action] = []
        if not self.closed:
            out.append(CloseTransport())
            self._end(out, reason, _REPLACED)
        return out

    def transport_closed(self, reason: str = "closed by client") -> list[Action]:
        """The connection is gone (either side)."""
        out: list[Action] = []
        if not self.closed:
            self._end(out, reason, _CLOSED)
        return out

    # -- packets ------------------------------------------------------------------

    def _receive(self, out: list[Action], body: bytes, now: float) -> None:
        if self.closed:
            return
        self.last_active = now
        try:
            packet = parse_input(body)
        except PacketError as exc:
            self._fail(out, Code.BAD_REQUEST, str(exc))
            return
        signed_in = self.state is _SIGNED_IN
        if packet.type == cx.PT_HEARTBEAT and signed_in and self._request is None:
            self._reply(out, packet)
            return
        if packet.type == cx.PT_MESSAGE and signed_in:
            self._take_ack(out, packet.data)
            return
        if self._inbox is None:
            self._inbox = deque()
        if len(self._inbox) >= INBOX_LIMIT:
            self._fail(out, Code.BAD_REQUEST, "too many packets waiting: slow down")
            return
        if packet.type == cx.PT_SYNC and self.order is not None:
            self.order.syncing = self.order.asking = True  # from now: pushes wait for its answer
        self._inbox.append(packet)
        self._next(out)

    def _next(self, out: list[Action]) -> None:
        """Handle waiting packets in order until one needs logic; once closed, only acks
        are still sent to logic."""
        inbox = self._inbox
        while self._request is None and inbox:
            packet = inbox.popleft()
            if not self.closed or (packet.type == cx.PT_MESSAGE and self.device_id):
                try:
                    self._handle(out, packet)
                except PacketError as exc:  # a bad packet is answered, the connection stays
                    self._reply(out, packet, code=Code.BAD_REQUEST, message=str(exc))
        if not inbox:
            self._inbox = None  # packets come rarely: no idle deque per connection

    def _handle(self, out: list[Action], packet: cx.Input) -> None:
        if not self.device_id:
            if packet.type == cx.PT_SIGN_IN:
                sign_in = parse_data(cx.SignInInput, packet.data)
                self._sign_in(out, packet, sign_in.user_id, sign_in.device_id, sign_in.token)
            else:
                self._fail(out, Code.UNAUTHORIZED, "sign in first", packet.type, packet.request_id)
        elif packet.type not in KNOWN_TYPES:
            self._reply(out, packet, code=Code.BAD_REQUEST, message=f"unknown package type {packet.type}")
        elif packet.type == cx.PT_HEARTBEAT:
            self._reply(out, packet)
        elif packet.type == cx.PT_SIGN_IN:
            self._reply(out, packet, code=Code.BAD_REQUEST, message="already signed in")
        elif packet.type == cx.PT_SYNC:
            self._sync(out, packet)
        elif packet.type == cx.PT_MESSAGE:  # sent while signing in
            self._take_ack(out, packet.data)
        elif packet.type == cx.PT_SUBSCRIBE_ROOM:
            self._subscribe_room(out, packet)

    def _ask(self, out: list[Action], call: Call, packet: cx.Input) -> None:
        self._request = (call, packet)
        out.append(call)

    def _refused(self, out: list[Action], packet: cx.Input, outcome: Outcome) -> None:
        """A request logic refused or could not take: answered, the connection stays."""
        if isinstance(outcome, Refused):
            self._reply(out, packet, code=wire_code(outcome.code), message=outcome.message)
        elif isinstance(outcome, Unreachable):
            self._log(out, "warning", "logic_call_failed", type=packet.type, status=outcome.status)
            message = f"temporarily unavailable ({outcome.status}), retry"
            self._reply(out, packet, code=Code.BAD_REQUEST, message=message)

    # -- sign-in ------------------------------------------------------------------

    def _sign_in(self, out: list[Action], packet: cx.Input, user_id: int, device_id: int, token: str) -> None:
        if self.state is not _CONNECTED:
            return
        if not (0 < user_id < 2**63 and 0 < device_id < 2**63):
            message = "user_id and device_id must be positive 64-bit numbers"
            self._fail(out, Code.UNAUTHORIZED, message, cx.PT_SIGN_IN, packet.request_id)
            return
        self.state = _SIGNING_IN
        self._ask(out, SignIn(user_id, device_id, token), packet)

    def _signed_in(self, out: list[Action], call: SignIn, packet: cx.Input, outcome: Outcome) -> None:
        if self.closed:  # the client left while logic was answering: undo a sign-in it made
            if isinstance(outcome, Answered):
                out.append(MarkOffline(call.user_id, call.device_id))
            return
        self.state = _CONNECTED
        request_id = packet.request_id
        if isinstance(outcome, Refused):
            self._fail(out, wire_code(outcome.code), outcome.message, cx.PT_SIGN_IN, request_id)
        elif isinstance(outcome, Unreachable):
            self._log(out, "warning", "sign_in_unavailable", status=outcome.status)
            message = f"sign-in temporarily unavailable ({outcome.status}): connect again later"
            self._fail(out, Code.BAD_REQUEST, message, cx.PT_SIGN_IN, request_id)
        elif isinstance(outcome, NodeStopping):
            message = "server is shutting down: connect again (to another node)"
            self._fail(out, Code.BAD_REQUEST, message, cx.PT_SIGN_IN, request_id)
        elif isinstance(outcome, Answered):
            self.state = _SIGNED_IN
            self.user_id, self.device_id = call.user_id, call.device_id
            out.append(StopTimer(Timer.SIGN_IN))
            max_seq = outcome.value
            if max_seq is not None:
                self.order = PushOrder(max_seq)
                # Pushes wait for the client's first sync: one shown before it would move the
                # client's position (the highest seq it has) past the messages the sync is for.
                self.order.syncing = True
            out.append(Bind(call.user_id, call.device_id))
            self._reply(out, packet)

    # -- sync, ack, rooms ---------------------------------------------------------

    def _sync(self, out: list[Action], packet: cx.Input) -> None:
        order = self.order
        try:
            sync = parse_data(cx.SyncInput, packet.data)
        except PacketError:
            if order is not None:  # not a sync after all: pushes need not wait for it
                order.asking = False
                self._write_pushes(out, order.stop_syncing())
            raise
        if sync.seq == 0 and self._acking is not None:
            # from 0 is "after the highest ack": the acks the client sent before count
            self._request = (self._acking, packet)
            return
        if order is not None and not self._missed_push and order.has_all_after(sync.seq):  # nothing to ask logic for
            order.asking = False
            self._reply(out, packet)  # an empty SyncOutput: no messages, has_more false
            out.append(SyncedHere())
            self._write_pushes(out, order.synced(0, more=False))
            return
        if order is not None:
            order.syncing = order.asking = True  # pushes wait for the answer (see push_order.py)
        self._ask(out, Sync(self.user_id, self.device_id, sync.seq), packet)

    def _synced(self, out: list[Action], packet: cx.Input, outcome: Outcome) -> None:
        order = self.order
        if order is not None:
            order.asking = False
        if not isinstance(outcome, Answered):
            if order is not None:
                asked = parse_data(cx.SyncInput, packet.data).seq  # it parsed when it was asked
                self._write_pushes(out, order.sync_failed(asked))
            self._refused(out, packet, outcome)
            return
        data: bytes = outcome.value
        self._reply(out, packet, data=data)
        if order is not None:
            try:
                answer = parse_data(cx.SyncOutput, data)
            except PacketError as exc:
                self._log(out, "error", "sync_answer_bad", error=str(exc))
                self._close(out, "internal error")
                return
            highest = answer.messages[-1].seq if answer.messages else 0
            self._write_pushes(out, order.synced(highest, answer.has_more))

    def _take_ack(self, out: list[Action], data: bytes) -> None:
        """An ack: to logic now, or merged into the one waiting while another is with logic
        (clients ack every push and only the highest counts, so a slow logic never makes a
        client's acks pile up). An ack is never answered (as in 2021: clients take every
        downstream PT_MESSAGE for a push), not even when it fails: a lost ack is corrected
        by the device's next ack or sync, so a failure is only logged (summarised)."""
        try:
            ack = parse_data(cx.MessageACK, data)
        except PacketError as exc:
            self._ack_dropped(out, type(exc).__name__, str(exc))
            return
        if self._acking is None:
            self._send_ack(out, ack)
        elif self._ack is None or ack.device_ack > self._ack.device_ack:
            self._ack = ack

    def _send_ack(self, out: list[Action], ack: cx.MessageACK) -> None:
        self._ack = None
        self._acking = Ack(self.user_id, self.device_id, ack.device_ack, ack.receive_time)
        out.append(self._acking)

    def _ack_dropped(self, out: list[Action], kind: str, reason: str) -> None:
        fields = {"kind": kind, "reason": reason, "device_id": self.device_id}
        out.append(Log("warning", "ack_dropped", fields, summarised=True))

    def _subscribe_room(self, out: list[Action], packet: cx.Input) -> None:
        """Join one room (leaving any other), or leave with room_id 0; replay if seq > 0."""
        sub = parse_data(cx.SubscribeRoomInput, packet.data)
        room_id, seq = sub.room_id, sub.seq
        if room_id < 0 or seq < 0:
            raise PacketError("room_id and seq must not be negative")
        self._set_room(out, room_id)
        self._log(out, "debug", "room_subscribed", room_id=room_id, seq=seq)
        if room_id and seq > 0:
            # Logic pushes the kept messages after `seq` to this device through
            # ConnectInt before it answers, so they arrive before the reply.
            self._ask(out, SubscribeRoom(self.user_id, self.device_id, room_id, seq), packet)
        else:
            self._reply(out, packet)

    def _set_room(self, out: list[Action], room_id: int) -> None:
        if self.room_id or room_id:
            out.append(SetRoom(leave=self.room_id, join=room_id))
        self.room_id = room_id

    # -- pushes and gaps ------------------------------------------------------------

    def _push(self, out: list[Action], message_send: bytes) -> None:
        body = output(cx.PT_MESSAGE, data=message_send)
        if len(body) > FRAME_MAX:  # never from a current logic (messages fit by construction)
            error = f"a frame body must be 1..{FRAME_MAX} bytes, got {len(body)}"
            self._log(out, "warning", "push_too_large", error=error)
            return
        self._send(out, Encoded(body))

    def _write_pushes(self, out: list[Action], ready: list[bytes]) -> None:
        """Write what the push order let out, and keep a timer while pushes are held: the
        missing seqs are fetched after GAP_WAIT (SYNC_STALL while the client syncs)."""
        for data in ready:
            self._push(out, data)
        order = self.order
        if order is None or self.closed:
            return
        if order.waiting and self._gap is _GAP_NONE:
            self._wait_gap(out, SYNC_STALL if order.syncing else GAP_WAIT)
        elif not order.waiting and self._gap is _GAP_WAITING:
            out.append(StopTimer(Timer.GAP))  # the missing ones came
            self._gap = _GAP_NONE

    def _wait_gap(self, out: list[Action], seconds: float) -> None:
        self._gap = _GAP_WAITING
        out.append(StartTimer(Timer.GAP, seconds))

    def _start_fill(self, out: list[Action]) -> None:
        """Fetch the seqs missing before the held pushes from logic (a sync from the last
        one given), then let everything out in order. If logic cannot answer, the held
        pushes wait: the client's next sync, or the next fill, brings what is missing."""
        order = self.order
        assert order is not None
        if order.asking:  # the client's own sync is with logic: its answer decides
            self._wait_gap(out, GAP_WAIT)
            return
        self._gap = _GAP_FILLING
        if order.syncing:  # the client stopped paging
            for data in order.stop_syncing():
                self._push(out, data)
        self._fill_pages = 0
        self._fill_page(out)

    def _fill_page(self, out: list[Action]) -> None:
        order = self.order
        assert order is not None
        if self._fill_pages < FILL_PAGES and not self.closed and order.waiting:
            self._fill_pages += 1
            self._fill_wanted = order.wanted
            self._fill = Sync(self.user_id, self.device_id, order.last, fill=True)
            out.append(self._fill)
            return
        order.failed_fills = 0
        self._fill_done(out, failed=False)

    def _fill_answered(self, out: list[Action], outcome: Outcome) -> None:
        self._fill = None
        order = self.order
        assert order is not None
        if isinstance(outcome, Failed):  # a bug: no further fill until the next push is held
            self._gap = _GAP_NONE
            return
        if not isinstance(outcome, Answered):
            order.failed_fills += 1
            self._log(out, "warning", "push_gap_fill_failed", error=_reason(outcome), tries=order.failed_fills)
            self._fill_done(out, failed=True)
            return
        if order.syncing:  # the client asked itself meanwhile: its answer closes the gap
            order.failed_fills = 0
            self._fill_done(out, failed=False)
            return
        try:
            answer = parse_data(cx.SyncOutput, outcome.value)
        except PacketError as exc:
            order.failed_fills += 1
            self._log(out, "warning", "push_gap_fill_failed", error=str(exc), tries=order.failed_fills)
            self._fill_done(out, failed=True)
            return
        wanted = self._fill_wanted
        synced = [(m.seq, cx.MessageSend(message=m).SerializeToString()) for m in answer.messages if m.seq <= wanted]
        reached = not answer.has_more or not answer.messages or answer.messages[-1].seq >= wanted
        for data in order.fill(synced, upto=wanted) if reached else order.advance(synced):
            self._push(out, data)
        self._log(out, "info", "push_gap_filled", fetched=len(synced), last=order.last)
        self._fill_page(out)

    def _fill_done(self, out: list[Action], failed: bool) -> None:
        self._gap = _GAP_NONE
        order = self.order
        assert order is not None
        if self.closed or order.syncing or not order.waiting:
            return
        if failed and order.failed_fills >= FILL_TRIES:
            # Never skip what is missing (the client would sync past it): it reconnects
            # and syncs from what it has.
            self._close(out, "the messages before a push could not be fetched: reconnect and sync")
        else:
            self._wait_gap(out, GAP_WAIT)

    # -- output and the end ---------------------------------------------------------

    def _send(self, out: list[Action], encoded: Encoded) -> None:
        if not self.closed:
            out.append(Send(encoded))

    def _reply(self, out: list[Action], packet: cx.Input, code: int = 0, message: str = "", data: bytes = b"") -> None:
        self._send(out, Encoded(output(packet.type, packet.request_id, int(code), message, data)))

    def _log(self, out: list[Action], level: str, event: str, **fields: object) -> None:
        out.append(Log(level, event, fields))

    def _fail(
        self, out: list[Action], code: int, message: str, package_type: int = cx.PT_UNKNOWN, request_id: int = 0
    ) -> None:
        if self.closed:
            return
        self._send(out, Encoded(output(package_type, request_id, int(code), message)))
        self._close(out, f"{int(code)}: {message}")

    def _close(self, out: list[Action], reason: str) -> None:
        if not self.closed:
            out.append(CloseTransport())
            self._end(out, reason, _CLOSED)

    def _end(self, out: list[Action], reason: str, state: State) -> None:
        """Acks already received are still sent to logic (see `_next`); anything else
        still waiting is dropped."""
        was = self.state
        self.state = state
        if was is _CONNECTED or was is _SIGNING_IN:
            out.append(StopTimer(Timer.SIGN_IN))
        if self._gap is _GAP_WAITING:
            out.append(StopTimer(Timer.GAP))
        self._gap = _GAP_NONE
        self._set_room(out, 0)
        device_id = self.device_id if was is _SIGNED_IN else 0
        out.append(Ended(reason, self.user_id, device_id, replaced=state is _REPLACED))
