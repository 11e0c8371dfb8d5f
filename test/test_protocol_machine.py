"""The connection state machine (gim.pkg.protocol.machine) driven by bytes and events alone:
every state and transition, checked through the actions it returns. No server, no socket."""

from __future__ import annotations

from typing import Any

import pytest

from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol import machine as m
from gim.pkg.protocol.actions import (
    Ack,
    Action,
    Answered,
    Bind,
    CloseTransport,
    Ended,
    Failed,
    Log,
    MarkOffline,
    NodeStopping,
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
from gim.pkg.protocol.frames import FRAME_MAX, FrameDecoder, encode_frame
from gim.pkg.protocol.machine import Connection, State
from gim.pkg.protocol.packets import Encoded, input_body, output
from gim.pkg.protocol.push_order import MAX_HELD, SENT

USER, DEVICE, TOKEN = 7, 70, "t0ken"


def frame(package_type: int, request_id: int = 0, data: bytes = b"") -> bytes:
    return encode_frame(input_body(package_type, request_id, data))


def sign_in_frame(request_id: int = 1, user_id: int = USER, device_id: int = DEVICE) -> bytes:
    data = cx.SignInInput(user_id=user_id, device_id=device_id, token=TOKEN).SerializeToString()
    return frame(cx.PT_SIGN_IN, request_id, data)


def sync_frame(seq: int, request_id: int = 2) -> bytes:
    return frame(cx.PT_SYNC, request_id, cx.SyncInput(seq=seq).SerializeToString())


def ack_frame(seq: int) -> bytes:
    return frame(cx.PT_MESSAGE, 0, cx.MessageACK(device_ack=seq).SerializeToString())


def sent(actions: list[Action]) -> list[cx.Output]:
    return [cx.Output.FromString(a.out.body) for a in actions if isinstance(a, Send)]


def only(actions: list[Action], kind: type[Any]) -> Any:
    (found,) = [a for a in actions if isinstance(a, kind)]
    return found


def ended(actions: list[Action]) -> Ended:
    """The last action, which closes the connection."""
    assert isinstance(actions[-1], Ended), actions
    return actions[-1]


def message_send(seq: int) -> bytes:
    return cx.MessageSend(message=cx.Message(seq=seq, message_content=b"m%d" % seq)).SerializeToString()


def pushed_seqs(actions: list[Action]) -> list[int]:
    return [cx.MessageSend.FromString(o.data).message.seq for o in sent(actions) if o.type == cx.PT_MESSAGE]


def sync_answer(seqs: list[int], more: bool = False) -> bytes:
    messages = [cx.Message(seq=s, message_content=b"m%d" % s) for s in seqs]
    return cx.SyncOutput(messages=messages, has_more=more).SerializeToString()


def connected() -> Connection:
    conn = Connection(sign_in_timeout=10.0, decoder=FrameDecoder(max_body=4096))  # connect's max_body_bytes
    assert conn.open() == [StartTimer(Timer.SIGN_IN, 10.0)]
    return conn


def signed_in(max_seq: int | None = 5, synced: bool = True) -> Connection:
    """A connection signed in as USER/DEVICE whose first sync (if `synced`) was answered empty."""
    conn = connected()
    call = only(conn.data_received(sign_in_frame(), now=1.0), SignIn)
    conn.answered(call, Answered(max_seq))
    if synced:
        actions = conn.data_received(sync_frame(0), now=1.0)
        if max_seq != 0:  # (a user without messages is answered by connect itself)
            conn.answered(only(actions, Sync), Answered(sync_answer([])))
    return conn


# -- sign-in ---------------------------------------------------------------------------


def test_sign_in_split_and_sticky_bytes_then_signed_in() -> None:
    conn = connected()
    data = sign_in_frame(request_id=9) + frame(cx.PT_HEARTBEAT, 10)
    assert conn.data_received(data[:3], now=1.0) == []  # a header and one byte: nothing yet
    actions = conn.data_received(data[3:], now=2.0)  # the rest of it, and a heartbeat stuck on
    call = only(actions, SignIn)
    assert (call.user_id, call.device_id, call.token) == (USER, DEVICE, TOKEN)
    assert conn.state is State.SIGNING_IN and conn.busy and conn.last_active == 2.0
    assert sent(actions) == [], "the heartbeat waits behind the sign-in"
    actions = conn.answered(call, Answered(41))
    assert actions[:2] == [StopTimer(Timer.SIGN_IN), Bind(USER, DEVICE)]
    assert [(o.type, o.request_id, o.code) for o in sent(actions)] == [(cx.PT_SIGN_IN, 9, 0), (cx.PT_HEARTBEAT, 10, 0)]
    assert conn.signed_in and not conn.busy
    assert (conn.user_id, conn.device_id) == (USER, DEVICE)
    assert conn.order is not None and conn.order.last == 41 and conn.order.syncing, "pushes wait for the first sync"


def test_sign_in_without_seq_from_an_older_logic_has_no_push_order() -> None:
    conn = signed_in(max_seq=None, synced=False)
    assert conn.order is None
    assert pushed_seqs(conn.push_stored(9, message_send(9))) == [9], "pushes go as they come"
    assert conn.push_stored(10, SENT) == []


@pytest.mark.parametrize(
    ("outcome", "code", "text"),
    [
        (Refused(Code.UNAUTHORIZED, "bad token"), 10000, "bad token"),
        (Refused(Code.UNAVAILABLE, "redis down"), 10001, "redis down"),  # 10002 is 10001 on the long connection
        (Unreachable("UNAVAILABLE", "no logic"), 10001, "sign-in temporarily unavailable (UNAVAILABLE)"),
        (NodeStopping(), 10001, "server is shutting down"),
    ],
)
def test_refused_sign_in_answers_and_closes(outcome: Any, code: int, text: str) -> None:
    conn = connected()
    call = only(conn.data_received(sign_in_frame(request_id=3), now=1.0), SignIn)
    actions = conn.answered(call, outcome)
    (reply,) = sent(actions)
    assert (reply.type, reply.request_id, reply.code) == (cx.PT_SIGN_IN, 3, code)
    assert text in reply.message
    assert actions[-3:] == [CloseTransport(), StopTimer(Timer.SIGN_IN), Ended(f"{code}: {reply.message}", 0, 0, False)]
    assert conn.state is State.CLOSED
    assert any(isinstance(a, Log) and a.event == "sign_in_unavailable" for a in actions) == isinstance(
        outcome, Unreachable
    )


@pytest.mark.parametrize(("user_id", "device_id"), [(0, 1), (1, 0), (-1, 1), (1, -5)])
def test_sign_in_with_impossible_ids_is_refused_without_asking_logic(user_id: int, device_id: int) -> None:
    conn = connected()
    actions = conn.data_received(sign_in_frame(user_id=user_id, device_id=device_id), now=1.0)
    assert not [a for a in actions if isinstance(a, SignIn)]
    assert [(o.code, o.type) for o in sent(actions)] == [(Code.UNAUTHORIZED, cx.PT_SIGN_IN)]
    assert conn.closed


def test_packets_before_sign_in_are_refused() -> None:
    conn = connected()
    actions = conn.data_received(frame(cx.PT_SYNC, 4, cx.SyncInput(seq=0).SerializeToString()), now=1.0)
    assert [(o.type, o.request_id, o.code, o.message) for o in sent(actions)] == [
        (cx.PT_SYNC, 4, Code.UNAUTHORIZED, "sign in first")
    ]
    assert conn.closed and ended(actions).device_id == 0
    assert conn.data_received(frame(cx.PT_HEARTBEAT), now=2.0) == [], "nothing is read once closed"


def test_deadline_closes_and_a_late_sign_in_is_undone() -> None:
    conn = connected()
    assert conn.timer_fired(Timer.SIGN_IN)[-1] == Ended("no sign-in in time", 0, 0, False)
    conn = connected()
    call = only(conn.data_received(sign_in_frame(), now=1.0), SignIn)
    actions = conn.timer_fired(Timer.SIGN_IN)
    assert actions[0] == CloseTransport() and ended(actions).reason == "no sign-in in time (still signing in)"
    assert conn.answered(call, Answered(3)) == [MarkOffline(USER, DEVICE)], "logic took it: undone"
    assert conn.state is State.CLOSED and conn.device_id == 0
    assert signed_in().timer_fired(Timer.SIGN_IN) == [], "a signed-in connection has no deadline"


def test_legacy_query_sign_in() -> None:
    conn = Connection(sign_in_timeout=10.0)  # WebSocket: no decoder
    call = only(conn.sign_in(USER, DEVICE, TOKEN), SignIn)
    assert conn.sign_in(USER, DEVICE, TOKEN) == [], "one sign-in at a time"
    assert [o.type for o in sent(conn.answered(call, Answered(0)))] == [cx.PT_SIGN_IN]
    reply = sent(conn.receive(input_body(cx.PT_SIGN_IN, 5, b""), now=1.0))
    assert [(o.code, o.message) for o in reply] == [(Code.BAD_REQUEST, "already signed in")]
    assert conn.sign_in(USER, DEVICE, TOKEN) == []


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00", "zero-length frame"),
        (b"\xff\xff\x00", "larger than"),
        (encode_frame(b"\xff\xff"), "not a valid Input"),
    ],
)
def test_bytes_that_are_no_packet_close_the_connection(data: bytes, reason: str) -> None:
    conn = signed_in()
    actions = conn.data_received(data, now=2.0)
    (error,) = sent(actions)
    assert error.code == Code.BAD_REQUEST and reason in error.message
    assert conn.closed and actions[-1] == Ended(f"10001: {error.message}", USER, DEVICE, False)


def test_signed_in_answers_heartbeats_at_once_and_refuses_unknown_types() -> None:
    conn = signed_in()
    assert [(o.type, o.request_id, o.code) for o in sent(conn.data_received(frame(cx.PT_HEARTBEAT, 3), 5.0))] == [
        (cx.PT_HEARTBEAT, 3, 0)
    ]
    assert conn.last_active == 5.0
    (refusal,) = sent(conn.data_received(frame(99, 4), 6.0))
    assert (refusal.type, refusal.code, refusal.message) == (99, Code.BAD_REQUEST, "unknown package type 99")
    (bad_sync,) = sent(conn.data_received(frame(cx.PT_SYNC, 5, b"\xff"), 7.0))
    assert (bad_sync.request_id, bad_sync.code) == (5, Code.BAD_REQUEST), "answered, the connection stays"
    assert conn.signed_in


def test_a_flood_of_waiting_packets_closes_the_connection() -> None:
    conn = signed_in()
    assert isinstance(conn.data_received(sync_frame(0), 2.0)[0], Sync)
    waiting = frame(cx.PT_HEARTBEAT) * m.INBOX_LIMIT
    assert conn.data_received(waiting, 2.0) == [], "behind the sync: they wait"
    (error,) = sent(conn.data_received(frame(cx.PT_HEARTBEAT), 2.0))
    assert (error.code, error.message) == (Code.BAD_REQUEST, "too many packets waiting: slow down")
    assert conn.closed


# -- requests in order -------------------------------------------------------------------


def test_packets_are_answered_in_order_behind_a_sync() -> None:
    conn = signed_in()
    call = only(conn.data_received(sync_frame(3, request_id=20) + frame(cx.PT_HEARTBEAT, 21), 2.0), Sync)
    assert (call.user_id, call.device_id, call.seq, call.fill) == (USER, DEVICE, 3, False)
    actions = conn.answered(call, Answered(sync_answer([4, 5])))
    assert [(o.type, o.request_id) for o in sent(actions)] == [(cx.PT_SYNC, 20), (cx.PT_HEARTBEAT, 21)]
    answer = cx.SyncOutput.FromString(sent(actions)[0].data)
    assert [msg.seq for msg in answer.messages] == [4, 5]
    assert conn.order is not None and conn.order.last == 5, "the answer moved the push order"


@pytest.mark.parametrize(
    ("outcome", "code", "text"),
    [
        (Refused(Code.DEVICE_NOT_FOUND, "no device"), 10014, "no device"),
        (Refused(Code.UNAVAILABLE, "db down"), 10001, "db down"),
        (Unreachable("DEADLINE_EXCEEDED", ""), 10001, "temporarily unavailable (DEADLINE_EXCEEDED), retry"),
    ],
)
def test_a_refused_request_is_answered_and_the_connection_stays(outcome: Any, code: int, text: str) -> None:
    conn = signed_in()
    call = only(conn.data_received(sync_frame(0, request_id=8), 2.0), Sync)
    (reply,) = sent(conn.answered(call, outcome))
    assert (reply.type, reply.request_id, reply.code, reply.message) == (cx.PT_SYNC, 8, code, text)
    assert conn.signed_in and not conn.busy


def test_an_unexpected_failure_closes_with_internal_error() -> None:
    conn = signed_in()
    call = only(conn.data_received(sync_frame(0) + frame(cx.PT_HEARTBEAT), 2.0), Sync)
    actions = conn.answered(call, Failed("RuntimeError()"))
    assert sent(actions) == [] and actions[-1] == Ended("internal error", USER, DEVICE, False)


def test_acks_merge_while_one_is_with_logic_and_are_never_answered() -> None:
    conn = signed_in()
    first = only(conn.data_received(ack_frame(3), 2.0), Ack)
    assert (first.user_id, first.device_id, first.device_ack) == (USER, DEVICE, 3)
    assert conn.data_received(ack_frame(5) + ack_frame(4) + ack_frame(5), 2.0) == [], "merged into one waiting"
    second = only(conn.answered(first, Answered()), Ack)
    assert second.device_ack == 5, "only the highest counts"
    actions = conn.answered(second, Refused(Code.BAD_REQUEST, "bad ack"))
    log = only(actions, Log)
    assert (log.event, log.summarised, log.fields["kind"], log.fields["reason"]) == (
        "ack_dropped",
        True,
        "10001",
        "bad ack",
    )
    assert sent(actions) == []
    actions = conn.data_received(frame(cx.PT_MESSAGE, 9, b"\xff\xff"), 3.0)
    assert [(a.event, a.fields["kind"]) for a in actions if isinstance(a, Log)] == [("ack_dropped", "PacketError")]
    assert sent(actions) == [] and conn.signed_in


def test_rooms_are_joined_left_and_replayed() -> None:
    conn = signed_in()
    join = cx.SubscribeRoomInput(room_id=11).SerializeToString()
    actions = conn.data_received(frame(cx.PT_SUBSCRIBE_ROOM, 1, join), 2.0)
    assert only(actions, SetRoom) == SetRoom(leave=0, join=11) and conn.room_id == 11
    assert [(o.type, o.code) for o in sent(actions)] == [(cx.PT_SUBSCRIBE_ROOM, 0)]
    replay = cx.SubscribeRoomInput(room_id=12, seq=4).SerializeToString()
    actions = conn.data_received(frame(cx.PT_SUBSCRIBE_ROOM, 2, replay), 2.0)
    call = only(actions, SubscribeRoom)
    assert only(actions, SetRoom) == SetRoom(leave=11, join=12) and (call.room_id, call.seq) == (12, 4)
    assert sent(actions) == [], "answered once logic has replayed"
    assert [o.request_id for o in sent(conn.answered(call, Answered()))] == [2]
    negative = cx.SubscribeRoomInput(room_id=-1).SerializeToString()
    (refusal,) = sent(conn.data_received(frame(cx.PT_SUBSCRIBE_ROOM, 3, negative), 2.0))
    assert refusal.code == Code.BAD_REQUEST and conn.room_id == 12
    assert SetRoom(leave=12, join=0) in conn.close("bye"), "closing leaves the room"


# -- pushes ----------------------------------------------------------------------------


def test_pushes_wait_for_the_first_sync_then_follow_its_answer() -> None:
    conn = signed_in(max_seq=5, synced=False)
    actions = conn.push_stored(6, message_send(6))
    assert pushed_seqs(actions) == [] and StartTimer(Timer.GAP, m.SYNC_STALL) in actions
    call = only(conn.data_received(sync_frame(5), 2.0), Sync)
    actions = conn.answered(call, Answered(sync_answer([6])))
    assert [o.type for o in sent(actions)] == [cx.PT_SYNC], "the push came in the answer: not again"
    assert StopTimer(Timer.GAP) in actions
    assert pushed_seqs(conn.push_stored(7, message_send(7))) == [7]


def test_a_failed_first_sync_keeps_later_pushes_behind_what_the_client_lacks() -> None:
    """The client reconnects holding seq 56 while the user's highest is 59; its first sync
    fails (logic away). The push of 60 must not pass 57-59: they are fetched from 56 (a gap
    fill) and everything goes out in order, the push of 60 last."""
    conn = signed_in(max_seq=59, synced=False)
    call = only(conn.data_received(sync_frame(56), 2.0), Sync)
    assert pushed_seqs(conn.push_stored(60, message_send(60))) == [], "held while the client syncs"
    actions = conn.answered(call, Unreachable("UNAVAILABLE", "logic away"))
    assert pushed_seqs(actions) == [], "60 would pass 57-59, which the client does not have"
    assert [(o.type, o.code) for o in sent(actions)] == [(cx.PT_SYNC, 10001)]
    fill = only(conn.timer_fired(Timer.GAP), Sync)  # the timer armed when 60 was held
    assert (fill.seq, fill.fill) == (56, True), "the fill starts where the client is"
    actions = conn.answered(fill, Answered(sync_answer([57, 58, 59, 60])))
    assert pushed_seqs(actions) == [57, 58, 59, 60]
    assert pushed_seqs(conn.push_stored(61, message_send(61))) == [61]


def test_a_failed_sync_from_0_keeps_the_order_it_had() -> None:
    """From 0 the client asked "after the highest ack": connect knows no position to go
    back to, so the order keeps the user's highest seq at sign-in."""
    conn = signed_in(max_seq=5, synced=False)
    call = only(conn.data_received(sync_frame(0), 2.0), Sync)
    conn.answered(call, Unreachable("UNAVAILABLE", "logic away"))
    assert conn.order is not None and conn.order.last == 5
    assert pushed_seqs(conn.push_stored(6, message_send(6))) == [6]


def test_pushes_during_a_sync_with_more_pages_wait_for_the_last_page() -> None:
    conn = signed_in(max_seq=0)
    call = only(conn.data_received(sync_frame(0), 2.0), Sync)
    assert pushed_seqs(conn.push_stored(3, message_send(3))) == []
    actions = conn.answered(call, Answered(sync_answer([1], more=True)))
    assert [o.type for o in sent(actions)] == [cx.PT_SYNC]
    call = only(conn.data_received(sync_frame(1), 2.0), Sync)
    actions = conn.answered(call, Answered(sync_answer([2])))
    assert [o.type for o in sent(actions)] == [cx.PT_SYNC, cx.PT_MESSAGE] and pushed_seqs(actions) == [3]


def test_a_first_sync_that_has_everything_is_answered_without_logic() -> None:
    """After sign-in, a client that already has the user's highest seq (or a user without
    messages syncing from 0) is told "nothing more" at once; what comes next is pushed."""
    conn = signed_in(max_seq=0, synced=False)
    actions = conn.data_received(sync_frame(0), 2.0)
    assert [a for a in actions if isinstance(a, Sync)] == []
    (answer,) = sent(actions)
    assert (answer.type, answer.code, cx.SyncOutput.FromString(answer.data)) == (cx.PT_SYNC, 0, cx.SyncOutput())
    assert pushed_seqs(conn.push_stored(1, message_send(1))) == [1]
    conn = signed_in(max_seq=5, synced=False)
    assert [o.type for o in sent(conn.data_received(sync_frame(5), 2.0))] == [cx.PT_SYNC]
    assert only(conn.data_received(sync_frame(5, request_id=3), 2.0), Sync).seq == 5, "only the first sync"


def test_a_push_missed_while_signing_in_sends_the_first_sync_to_logic() -> None:
    """A push for the device reached the node before this connection took the device: the
    client may lack it, so its first sync goes to logic even from the user's highest seq."""
    conn = connected()
    call = only(conn.data_received(sign_in_frame(), now=1.0), SignIn)
    conn.missed_push()
    conn.answered(call, Answered(5))
    assert only(conn.data_received(sync_frame(5), 2.0), Sync).seq == 5


def test_a_first_sync_with_nothing_after_it_is_answered_here_and_counted() -> None:
    conn = signed_in(max_seq=5, synced=False)
    actions = conn.data_received(sync_frame(5), 2.0)
    assert not [a for a in actions if isinstance(a, Sync)], "logic is not asked"
    assert len([a for a in actions if isinstance(a, SyncedHere)]) == 1


def test_a_first_sync_that_lacks_something_goes_to_logic() -> None:
    for max_seq, seq in [(5, 0), (5, 4)]:
        conn = signed_in(max_seq=max_seq, synced=False)
        assert only(conn.data_received(sync_frame(seq), 2.0), Sync).seq == seq
    conn = signed_in(max_seq=5, synced=False)
    conn.push_stored(6, message_send(6))  # stored since the sign-in: logic answers with it
    assert only(conn.data_received(sync_frame(5), 2.0), Sync).seq == 5


def test_a_sync_that_does_not_parse_holds_no_push() -> None:
    conn = signed_in(max_seq=0)
    actions = conn.data_received(frame(cx.PT_SYNC, 1, b"\xff"), 2.0)
    assert [o.code for o in sent(actions)] == [Code.BAD_REQUEST]
    assert pushed_seqs(conn.push_stored(1, message_send(1))) == [1]


def test_crossed_pushes_go_out_in_seq_order() -> None:
    conn = signed_in(max_seq=5)
    actions = conn.push_stored(7, message_send(7))
    assert pushed_seqs(actions) == [] and actions == [StartTimer(Timer.GAP, m.GAP_WAIT)]
    actions = conn.push_stored(6, message_send(6))
    assert pushed_seqs(actions) == [6, 7] and actions[-1] == StopTimer(Timer.GAP)
    assert conn.push_stored(6, message_send(6)) == [], "given already"
    assert conn.push_stored(8, SENT) == [], "the device sent 8 itself"
    assert pushed_seqs(conn.push_stored(9, message_send(9))) == [9]
    assert pushed_seqs(conn.push_stored(0, message_send(0))) == [0], "not stored: no place in the order"


def test_a_gap_is_filled_from_logic_in_pages() -> None:
    conn = signed_in(max_seq=5)
    conn.push_stored(9, message_send(9))
    call = only(conn.timer_fired(Timer.GAP), Sync)
    assert (call.seq, call.fill) == (5, True)
    actions = conn.answered(call, Answered(sync_answer([6, 7], more=True)))
    assert pushed_seqs(actions) == [6, 7]
    page = only(actions, Sync)
    assert page.seq == 7, "the next page from the last one given"
    actions = conn.answered(page, Answered(sync_answer([8, 9])))
    assert pushed_seqs(actions) == [8, 9], "9 once: the held push, not again from the page"
    assert not [a for a in actions if isinstance(a, (Sync, StartTimer))]
    assert conn.order is not None and conn.order.last == 9 and not conn.order.waiting


def test_a_gap_logic_cannot_fill_closes_the_connection_after_some_tries() -> None:
    conn = signed_in(max_seq=5)
    conn.push_stored(7, message_send(7))
    for tries in range(1, m.FILL_TRIES):
        call = only(conn.timer_fired(Timer.GAP), Sync)
        actions = conn.answered(call, Unreachable("UNAVAILABLE", "down"))
        assert only(actions, Log).fields == {"error": "down", "tries": tries}
        assert actions[-1] == StartTimer(Timer.GAP, m.GAP_WAIT) and conn.signed_in
    call = only(conn.timer_fired(Timer.GAP), Sync)
    actions = conn.answered(call, Refused(Code.BAD_REQUEST, "no"))
    assert conn.closed and "could not be fetched" in ended(actions).reason
    assert pushed_seqs(actions) == [], "nothing is skipped"


def test_a_gap_waits_while_the_clients_own_sync_is_with_logic() -> None:
    conn = signed_in(max_seq=5)
    conn.push_stored(7, message_send(7))
    sync = only(conn.data_received(sync_frame(5), 2.0), Sync)
    assert conn.timer_fired(Timer.GAP) == [StartTimer(Timer.GAP, m.GAP_WAIT)], "its answer decides"
    actions = conn.answered(sync, Answered(sync_answer([6])))
    assert [o.type for o in sent(actions)] == [cx.PT_SYNC, cx.PT_MESSAGE] and pushed_seqs(actions) == [7]
    assert StopTimer(Timer.GAP) in actions


def test_too_many_held_pushes_close_the_connection() -> None:
    conn = signed_in(max_seq=0)
    for seq in range(2, MAX_HELD + 2):
        conn.push_stored(seq, message_send(seq))
    actions = conn.push_stored(MAX_HELD + 2, message_send(MAX_HELD + 2))
    assert only(actions, Log).event == "push_order_overflow" and conn.closed


def test_a_push_too_large_for_a_frame_is_skipped() -> None:
    conn = signed_in(max_seq=None)
    actions = conn.push(b"x" * FRAME_MAX)
    assert sent(actions) == [] and only(actions, Log).event == "push_too_large"
    assert len(sent(conn.push(b"x" * 100))) == 1 and conn.signed_in


# -- the end -------------------------------------------------------------------------


def test_close_replace_and_transport_gone() -> None:
    conn = signed_in(max_seq=5)
    conn.push_stored(7, message_send(7))  # the gap timer runs
    actions = conn.close("idle timeout")
    assert actions == [CloseTransport(), StopTimer(Timer.GAP), Ended("idle timeout", USER, DEVICE, False)]
    assert conn.close("again") == [] and conn.transport_closed() == [] and conn.fail(1, "x") == []
    assert conn.push_encoded(Encoded(output(cx.PT_MESSAGE))) == [] and conn.push(b"late") == []
    replaced = signed_in()
    actions = replaced.replace("replaced by a new connection of the same device")
    assert actions[0] == CloseTransport() and ended(actions).replaced and replaced.state is State.REPLACED
    gone = signed_in()
    assert gone.transport_closed() == [Ended("closed by client", USER, DEVICE, False)]
    assert connected().transport_closed("lost") == [StopTimer(Timer.SIGN_IN), Ended("lost", 0, 0, False)]


def test_an_ack_does_not_wait_for_a_request_with_logic_nor_holds_one_up() -> None:
    """A client acks a page of its sync and asks for the next at once: the sync goes to
    logic without waiting for the ack's answer, and an ack goes while a sync is with logic."""
    conn = signed_in()
    actions = conn.data_received(ack_frame(3) + sync_frame(3), 2.0)
    assert [type(a) for a in actions if isinstance(a, (Ack, Sync))] == [Ack, Sync]
    ack, sync = only(actions, Ack), only(actions, Sync)
    assert sent(conn.data_received(frame(cx.PT_HEARTBEAT, 7), 2.0)) == [], "the heartbeat waits behind the sync"
    assert conn.data_received(ack_frame(4), 2.0) == [], "merged behind the ack with logic"
    assert only(conn.answered(ack, Answered()), Ack).device_ack == 4
    assert [o.type for o in sent(conn.answered(sync, Answered(sync_answer([]))))] == [cx.PT_SYNC, cx.PT_HEARTBEAT]


def test_a_sync_from_0_waits_for_the_acks_sent_before_it() -> None:
    """From 0 is "after the highest ack": a client that acks a page and syncs from 0 again
    gets the page after it, not the same one."""
    conn = signed_in()
    first = only(conn.data_received(ack_frame(3), 2.0), Ack)
    assert conn.data_received(ack_frame(4) + sync_frame(0, request_id=9), 2.0) == []
    second = only(conn.answered(first, Answered()), Ack)
    assert second.device_ack == 4
    sync = only(conn.answered(second, Answered()), Sync)
    assert sync.seq == 0
    (answer,) = sent(conn.answered(sync, Answered(sync_answer([]))))
    assert (answer.type, answer.request_id) == (cx.PT_SYNC, 9)


def test_a_waiting_ack_still_reaches_logic_after_the_close() -> None:
    conn = signed_in()
    first = only(conn.data_received(ack_frame(7), 2.0), Ack)
    conn.data_received(ack_frame(8), 2.0)
    conn.transport_closed()
    actions = conn.answered(first, Answered())
    assert sent(actions) == [], "nothing is written to a closed connection"
    assert only(actions, Ack).device_ack == 8


def test_an_ack_that_fails_unexpectedly_is_dropped_and_the_connection_stays() -> None:
    conn = signed_in()
    ack = only(conn.data_received(ack_frame(7), 2.0), Ack)
    actions = conn.answered(ack, Failed("RuntimeError()"))
    assert only(actions, Log).event == "ack_dropped" and conn.signed_in


def test_a_client_that_stops_paging_gets_its_held_pushes_at_the_next_fill() -> None:
    conn = signed_in(max_seq=0)
    call = only(conn.data_received(sync_frame(0), 2.0), Sync)
    conn.answered(call, Answered(sync_answer([1], more=True)))  # and the client never asks for page 2
    assert pushed_seqs(conn.push_stored(2, message_send(2))) == []
    assert pushed_seqs(conn.timer_fired(Timer.GAP)) == [2], "it stopped paging: the held push goes"


def test_a_fill_gives_way_to_the_clients_own_sync() -> None:
    conn = signed_in(max_seq=5)
    conn.push_stored(8, message_send(8))
    fill = only(conn.timer_fired(Timer.GAP), Sync)
    sync = only(conn.data_received(sync_frame(5), 2.0), Sync)
    assert pushed_seqs(conn.answered(fill, Answered(sync_answer([6, 7])))) == [], "the client's answer decides"
    actions = conn.answered(sync, Answered(sync_answer([6, 7])))
    assert [o.type for o in sent(actions)] == [cx.PT_SYNC, cx.PT_MESSAGE] and pushed_seqs(actions) == [8]
    conn.push_stored(10, message_send(10))
    fill = only(conn.timer_fired(Timer.GAP), Sync)
    assert conn.answered(fill, Failed("bug")) == [], "a failed fill (a bug) waits for the next held push"
    assert only(conn.push_stored(12, message_send(12)), StartTimer) == StartTimer(Timer.GAP, m.GAP_WAIT)
