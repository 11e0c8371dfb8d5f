"""SeqOrder when a waiting send's caller gives up: its cancellation must not reach the
send it waits for (seen in `gim bench chaos`: InvalidStateError in finish, then every
later send to those users waited for good and timed out)."""

from __future__ import annotations

import asyncio

from gim.internal.logic.seq_order import SeqOrder


async def test_a_cancelled_waiter_leaves_the_earlier_send_intact() -> None:
    order = SeqOrder()
    first = order.start(["u1"])  # still storing: no seqs yet
    second = order.start(["u1"])
    waiting = asyncio.ensure_future(order.turn(second, {"u1": 2}))
    await asyncio.sleep(0)  # the second send now waits for the first one's seqs
    assert not waiting.done()
    waiting.cancel()  # its caller went away
    await asyncio.gather(waiting, return_exceptions=True)
    order.finish(second)
    await asyncio.wait_for(order.turn(first, {"u1": 1}), 1)
    order.finish(first)  # raised InvalidStateError before the fix
    assert first.done.result() is None
    third = order.start(["u1"])  # a later send to the same user is not held by either
    await asyncio.wait_for(order.turn(third, {"u1": 3}), 1)
    order.finish(third)
