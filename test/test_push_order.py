"""PushOrder: pushes in with their seq, bytes out in seq order (no I/O)."""

from __future__ import annotations

import itertools
import random

import pytest

from gim.pkg.protocol.push_order import MAX_HELD, SENT, HeldTooMany, PushOrder


def b(seq: int) -> bytes:
    return f"m{seq}".encode()


def test_in_order_pushes_go_straight_out() -> None:
    order = PushOrder(last=10)
    assert order.offer(11, b(11)) == [b(11)]
    assert order.offer(12, b(12)) == [b(12)]
    assert (order.last, order.waiting) == (12, False)


def test_unstored_messages_have_no_place_in_the_order() -> None:
    order = PushOrder(last=10)
    assert order.offer(0, b(0)) == [b(0)]
    assert order.last == 10


def test_what_the_client_already_has_is_dropped() -> None:
    order = PushOrder(last=10)
    assert order.offer(9, b(9)) == []
    assert order.offer(10, b(10)) == []
    assert order.offer(11, b(11)) == [b(11)]
    assert order.offer(11, b(11)) == [], "a second push of one seq"


def test_a_crossed_pair_is_put_back_in_order() -> None:
    order = PushOrder(last=10)
    assert order.offer(12, b(12)) == []
    assert (order.waiting, order.wanted) == (True, 12)
    assert order.offer(11, b(11)) == [b(11), b(12)]
    assert (order.last, order.waiting, order.held) == (12, False, None)


def test_every_arrival_order_comes_out_sorted() -> None:
    for arrival in itertools.permutations(range(1, 6)):
        order = PushOrder(last=0)
        out: list[bytes] = []
        for seq in arrival:
            out += order.offer(seq, b(seq))
        assert out == [b(s) for s in range(1, 6)], arrival
        assert not order.waiting


def test_a_sent_marker_moves_the_order_on_without_writing() -> None:
    order = PushOrder(last=10)
    assert order.offer(12, b(12)) == []
    assert order.offer(11, SENT) == [b(12)]
    assert order.offer(13, SENT) == []
    assert order.last == 13


def test_a_fill_closes_the_gap_and_skips_what_the_device_sent() -> None:
    order = PushOrder(last=10)
    order.offer(12, SENT)  # the device sent 12 itself
    order.offer(14, b(14))
    assert order.wanted == 14
    synced = [(s, b(s) + b"*") for s in (9, 11, 12, 13, 14)]
    assert order.fill(synced, upto=order.wanted) == [b(11) + b"*", b(13) + b"*", b(14) + b"*"]
    assert (order.last, order.waiting) == (14, False)
    assert order.offer(14, b(14)) == []


def test_a_fill_that_falls_short_lets_the_held_ones_out_in_order() -> None:
    order = PushOrder(last=10)
    order.offer(20, b(20))
    order.offer(15, b(15))
    assert order.fill([(11, b(11))], upto=order.wanted) == [b(11), b(15), b(20)]
    assert (order.last, order.waiting) == (20, False)


def test_what_is_held_is_bounded_and_never_skipped() -> None:
    order = PushOrder(last=0)
    for seq in range(2, MAX_HELD + 2):
        assert order.offer(seq, b(seq)) == []
    with pytest.raises(HeldTooMany):  # the session closes the connection: the client syncs
        order.offer(MAX_HELD + 2, b(MAX_HELD + 2))
    assert order.last == 0, "nothing skipped: the client's position never passes seq 1"


def test_random_crossings_with_a_fill_lose_nothing_and_repeat_nothing() -> None:
    rng = random.Random(7)
    for _ in range(200):
        seqs = list(range(1, 30))
        lost = set(rng.sample(seqs, 3))  # pushes that never arrive: the fill brings them
        arrival = [s for s in seqs if s not in lost]
        rng.shuffle(arrival)
        order = PushOrder(last=0)
        out: list[bytes] = []
        for seq in arrival[: len(arrival) // 2]:
            out += order.offer(seq, b(seq))
        if order.waiting:
            wanted = order.wanted
            out += order.fill([(s, b(s)) for s in seqs if s <= wanted], upto=wanted)
        for seq in arrival[len(arrival) // 2 :]:
            out += order.offer(seq, b(seq))
        out += order.fill([(s, b(s)) for s in seqs], upto=seqs[-1])
        assert out == [b(s) for s in seqs]


def test_pushes_wait_for_a_sync_answer_and_skip_what_it_carried() -> None:
    order = PushOrder(last=10)
    order.syncing = True  # a PT_SYNC from 10 is with logic
    assert order.offer(11, b(11)) == [], "held: the answer may carry it"
    assert order.offer(13, b(13)) == []
    assert order.synced(highest=12, more=False) == [b(13)], "11 and 12 came in the answer"
    assert (order.last, order.waiting, order.syncing) == (13, False, False)


def test_pushes_wait_for_the_next_page_while_the_answer_says_has_more() -> None:
    order = PushOrder(last=0)
    order.syncing = True
    assert order.offer(120, b(120)) == []
    assert order.synced(highest=50, more=True) == []
    assert order.offer(121, b(121)) == [], "still syncing: page 2 comes first"
    assert order.synced(highest=100, more=True) == []
    assert order.synced(highest=119, more=False) == [b(120), b(121)]
    assert order.last == 121


def test_a_client_that_stops_paging_gets_what_follows() -> None:
    order = PushOrder(last=5)
    order.syncing = True
    order.offer(8, b(8))
    order.offer(7, b(7))
    assert order.synced(highest=6, more=True) == []
    assert order.stop_syncing() == [b(7), b(8)]


def test_a_fill_never_skips_past_what_its_sync_covered() -> None:
    """A push held while the fill was on its way (17, beyond the 15 it asked up to) waits
    for the seqs before it, which may still be on their way as pushes."""
    order = PushOrder(last=10)
    order.offer(15, b(15))
    wanted = order.wanted
    order.offer(17, b(17))  # came during the fill
    assert order.fill([(12, b(12))], upto=wanted) == [b(12), b(15)], "13, 14 do not exist: skipped"
    assert (order.last, order.waiting) == (15, True)
    assert order.offer(16, b(16)) == [b(16), b(17)], "16 was on its way: not lost"
