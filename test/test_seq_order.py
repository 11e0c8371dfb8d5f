"""SeqOrder: deliveries leave in seq order per key, whatever order the seqs come back in."""

from __future__ import annotations

import asyncio

from gim.internal.logic.seq_order import SeqOrder


async def test_a_later_seq_waits_for_an_earlier_one_still_in_flight() -> None:
    order = SeqOrder()
    sent: list[str] = []
    early, late = order.start([7]), order.start([7])
    a_has_seq = asyncio.Event()

    async def deliver(job, seq: int, name: str, before: asyncio.Event | None = None) -> None:  # type: ignore[no-untyped-def]
        if before is not None:
            await before.wait()
        try:
            await order.turn(job, {7: seq})
            sent.append(name)
        finally:
            order.finish(job)

    # The send that started later got its seq (13) back first; the other (12) is slow.
    later = asyncio.ensure_future(deliver(late, 13, "seq 13"))
    await asyncio.sleep(0)  # let it reach its turn: it must wait, 12 is not known yet
    assert sent == []
    earlier = asyncio.ensure_future(deliver(early, 12, "seq 12", a_has_seq))
    a_has_seq.set()
    await asyncio.wait_for(asyncio.gather(later, earlier), 5)
    assert sent == ["seq 12", "seq 13"]


async def test_unrelated_keys_and_unstored_messages_do_not_wait() -> None:
    order = SeqOrder()
    slow = order.start([1])  # never gets its seqs in this test
    other_user, unstored = order.start([2]), order.start([1])
    await asyncio.wait_for(order.turn(other_user, {2: 5}), 5)
    await asyncio.wait_for(order.turn(unstored, {1: 0}), 5)  # seq 0: not stored, no order
    for job in (other_user, unstored, slow):
        order.finish(job)


async def test_a_send_that_ended_without_seqs_releases_the_ones_waiting() -> None:
    order = SeqOrder()
    failed, later = order.start([7]), order.start([7])
    waiting = asyncio.ensure_future(order.turn(later, {7: 5}))
    await asyncio.sleep(0)  # it waits: the other send has no seqs yet
    assert not waiting.done()
    order.finish(failed)  # its store failed (or it was a recognised retry): no seqs ever
    await asyncio.wait_for(waiting, 5)
    order.finish(later)
