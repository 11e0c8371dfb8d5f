"""The client's ordering core without I/O: sync pages and pushes in any interleaving
come out as each seq once, in order; plus backoff and the typed events."""

from __future__ import annotations

import random

import pytest

from gim.client.backoff import Backoff
from gim.client.events import Message, RoomMessage, decode_content, describe, event_of, text
from gim.client.ordering import RoomSeqs, Sequencer
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import push_ext_pb2 as px


def msg(seq: int, receiver_type: int = cx.RT_USER, receiver_id: int = 7) -> cx.Message:
    return cx.Message(
        seq=seq, receiver_type=receiver_type, receiver_id=receiver_id,  # type: ignore[arg-type]
        message_type=cx.MT_TEXT, message_content=text(f"m{seq}"),
    )  # fmt: skip


def seqs(messages: list[cx.Message]) -> list[int]:
    return [m.seq for m in messages]


def synced(seqr: Sequencer, store: list[int], page_size: int = 3) -> list[int]:
    """Run one whole sync against `store` (the stored seqs), page by page."""
    out: list[int] = []
    after = seqr.begin_sync()
    while True:
        page = [s for s in store if s > after][:page_size]
        out += seqs(seqr.page([msg(s) for s in page]))
        if len([s for s in store if s > after]) <= page_size:
            break
        after = page[-1]
    return out + seqs(seqr.end_sync())


def test_in_order_pushes_pass_straight_through() -> None:
    seqr = Sequencer(last=0)
    assert synced(seqr, []) == []
    assert [seqs(seqr.push(msg(s))) for s in (1, 2, 3)] == [[1], [2], [3]]
    assert not seqr.needs_sync


def test_duplicates_are_dropped() -> None:
    seqr = Sequencer(last=0)
    assert synced(seqr, [1, 2]) == [1, 2]
    assert seqr.push(msg(2)) == [] and seqr.push(msg(1)) == []
    assert seqs(seqr.push(msg(3))) == [3]
    assert seqr.push(msg(3)) == []


def test_a_gap_asks_for_a_sync_and_held_pushes_follow_it() -> None:
    seqr = Sequencer(last=0)
    synced(seqr, [])
    assert seqr.push(msg(3)) == [] and seqr.needs_sync
    assert seqr.push(msg(4)) == []
    assert synced(seqr, [1, 2, 3, 4]) == [1, 2, 3, 4]
    assert seqr.held == 0 and not seqr.needs_sync


def test_pushes_during_a_sync_are_held_then_merged_once() -> None:
    seqr = Sequencer(last=5)
    after = seqr.begin_sync()
    assert after == 5
    assert seqr.push(msg(6)) == [] and seqr.push(msg(9)) == []  # arrived while syncing
    assert seqs(seqr.page([msg(6), msg(7)])) == [6, 7]
    assert seqr.push(msg(8)) == []
    assert seqs(seqr.end_sync()) == [8, 9]
    assert seqr.last == 9 and seqr.held == 0


def test_a_push_beyond_a_gap_that_arrived_during_the_sync_syncs_again() -> None:
    seqr = Sequencer(last=0)
    seqr.begin_sync()
    seqr.push(msg(3))  # the sync may have read the store before 2 and 3 were committed
    seqr.page([msg(1)])
    assert seqs(seqr.end_sync()) == [] and seqr.needs_sync
    assert synced(seqr, [1, 2, 3]) == [2, 3]


def test_a_real_gap_is_skipped_after_a_sync_that_saw_the_push() -> None:
    seqr = Sequencer(last=0)
    synced(seqr, [])
    seqr.push(msg(3))  # seq 2 was allocated by a send that failed: it never existed
    assert synced(seqr, [1, 3]) == [1, 3]
    assert not seqr.needs_sync


def test_not_persisted_messages_go_out_as_they_are() -> None:
    seqr = Sequencer(last=4)
    seqr.begin_sync()
    assert seqs(seqr.push(msg(0))) == [0]
    assert seqs(seqr.push(msg(0))) == [0]


def test_unknown_start_takes_the_first_sync_as_base() -> None:
    seqr = Sequencer()
    assert seqr.needs_sync and seqr.begin_sync() == 0
    assert seqs(seqr.page([msg(41), msg(42)])) == [41, 42]
    assert seqr.end_sync() == [] and seqr.last == 42
    # nothing to sync and a push arrives: it is held and a sync (from 0) decides
    seqr = Sequencer()
    synced(seqr, [])
    assert seqr.push(msg(10)) == [] and seqr.needs_sync
    assert synced(seqr, [10]) == [10]


def test_abort_mid_sync_keeps_held_pushes_for_the_next_connection() -> None:
    seqr = Sequencer(last=0)
    seqr.begin_sync()
    seqr.push(msg(3))
    seqr.page([msg(1)])
    seqr.abort_sync()
    assert seqr.needs_sync and seqr.held == 1
    assert synced(seqr, [1, 2, 3]) == [2, 3]


@pytest.mark.parametrize("seed", range(20))
def test_any_interleaving_yields_each_seq_once_in_order(seed: int) -> None:
    """A model: messages 1..N committed in order; pushes lost, repeated and reordered;
    syncs whenever asked, seeing only what was committed when they started."""
    rng = random.Random(seed)
    total = 60
    seqr = Sequencer(last=0)
    out: list[int] = []
    committed = 0
    pushes: list[int] = []
    sync_view: list[int] | None = None
    while len(out) < total:
        step = rng.random()
        if step < 0.4 and committed < total:
            committed += 1
            if rng.random() > 0.2:  # 20 % of pushes are lost
                pushes.insert(rng.randrange(len(pushes) + 1), committed)  # reordered
                if rng.random() < 0.1:
                    pushes.append(committed)  # and some come twice
        elif step < 0.7 and pushes:
            out += seqs(seqr.push(msg(pushes.pop(0))))
        elif sync_view is None and (seqr.needs_sync or rng.random() < 0.05):
            after = seqr.begin_sync()
            sync_view = [s for s in range(1, committed + 1) if s > after]
        elif sync_view is not None:
            page, sync_view = sync_view[:5], sync_view[5:]
            out += seqs(seqr.page([msg(s) for s in page]))
            if not sync_view:
                out += seqs(seqr.end_sync())
                sync_view = None
        elif committed == total and not pushes:
            seqr.needs_sync = True  # the client's periodic resync
    assert out == list(range(1, total + 1))


def test_room_messages_are_deduplicated_per_room() -> None:
    rooms = RoomSeqs()
    assert rooms.subscribe(5) == 0
    room = [msg(s, cx.RT_ROOM, 5) for s in (1, 2, 2, 1, 3)]
    assert [rooms.accept(m) for m in room] == [True, True, False, False, True]
    # live pushes and a replay cross: a lower seq after a higher one still counts, once
    late = [msg(s, cx.RT_ROOM, 5) for s in (300, 299, 300, 299)]
    assert [rooms.accept(m) for m in late] == [True, True, False, False]
    assert rooms.subscribe(5) == 300 - RoomSeqs.LOOK_BACK, "a resubscription replays from a little before"
    assert not rooms.accept(msg(4, cx.RT_ROOM, 6)), "another room's message"
    assert rooms.subscribe(6) == 0


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=0.5)
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(1.0, 0.1 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) > 1
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(initial=0)


def test_events_are_typed_and_decoded() -> None:
    sender = cx.Sender(sender_type=cx.ST_USER, sender_id=3, nickname="Ann")
    message = cx.Message(sender=sender, receiver_type=cx.RT_USER, receiver_id=4, message_type=cx.MT_TEXT,
                         message_content=text("hi"), seq=9, send_time=1_700_000_000_000)  # fmt: skip
    event = event_of(message)
    assert isinstance(event, Message) and not isinstance(event, RoomMessage)
    assert (event.seq, event.text, event.sender.name, event.sender.id) == (9, "hi", "Ann", 3)
    assert event.time.year == 2023
    assert "Ann (3): hi" in describe(event)
    room = event_of(cx.Message(receiver_type=cx.RT_ROOM, receiver_id=12, seq=1))
    assert isinstance(room, RoomMessage) and room.room_id == 12
    assert decode_content(cx.MT_TEXT, b"\xff\xff") is None
    assert decode_content(99, b"") is None
    location = decode_content(cx.MT_LOCATION, cx.Location(desc="x", latitude=1.5).SerializeToString())
    assert isinstance(location, cx.Location) and location.latitude == 1.5
    push = px.AddFriendPush(friend_id=5, nickname="Bo").SerializeToString()
    command = cx.Command(code=px.PC_ADD_FRIEND, data=push).SerializeToString()
    system = event_of(cx.Message(sender=cx.Sender(sender_type=cx.ST_SYSTEM), message_type=cx.MT_COMMAND,
                                 message_content=command, seq=2))  # fmt: skip
    assert isinstance(system.push, px.AddFriendPush) and system.push.nickname == "Bo"
    assert describe(system).endswith("* Bo (5) asks to be your friend")
