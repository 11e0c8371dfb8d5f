"""Batcher: requests that arrive together are handled together, within the size bound."""

from __future__ import annotations

import asyncio

from gim.pkg.batcher import Batcher, BatcherClosed, BatchMismatch


async def test_batches_respect_the_size_bound_and_answer_in_order() -> None:
    batches: list[list[list[int]]] = []

    async def handle(parts: list[list[int]]) -> list[int | BaseException]:
        batches.append(parts)
        return [sum(p) for p in parts]

    batcher: Batcher[list[int], int] = Batcher("test", handle, max_batch=5, workers=1, size=len)
    parts = [[1, 2], [3, 4], [5], [6, 7, 8, 9, 10, 11], [12]]  # the fourth alone exceeds the bound
    answers = await asyncio.gather(*(batcher.submit(p) for p in parts))
    assert answers == [sum(p) for p in parts]
    assert [p for batch in batches for p in batch] == parts, "every request once, in arrival order"
    assert all(sum(map(len, b)) <= 5 or len(b) == 1 for b in batches), batches
    assert len(batches) < len(parts), "requests that waited went together"


async def test_a_failing_request_fails_alone() -> None:
    async def handle(parts: list[int]) -> list[int | BaseException]:
        if 13 in parts:
            raise ValueError("unlucky")
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=10, workers=1)
    answers = await asyncio.gather(*(batcher.submit(n) for n in (11, 12, 13, 14)), return_exceptions=True)
    assert answers[:2] == [11, 12] and answers[3] == 14
    assert isinstance(answers[2], ValueError)


async def test_a_handler_that_miscounts_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def handle(parts: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        return parts[:-1] if calls == 1 else parts  # the first batch loses an answer

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=10, workers=1)
    first = [batcher.enqueue(n) for n in (1, 2, 3)]
    answers = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(a, BatchMismatch) for a in answers), answers
    assert await batcher.submit(4) == 4, "the batcher goes on serving"


async def test_a_cancelled_handler_settles_its_callers_and_close_fails_the_queue() -> None:
    started = asyncio.Event()

    async def handle(parts: list[int]) -> list[int | BaseException]:
        started.set()
        await asyncio.Event().wait()  # never answers: only cancellation ends it
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=1, workers=1)
    taken = batcher.enqueue(1)
    await started.wait()
    queued = batcher.enqueue(2)  # waits behind the first batch
    await batcher.close()
    assert taken.done() and isinstance(taken.exception(), BatcherClosed)
    assert queued.done() and isinstance(queued.exception(), BatcherClosed)
    try:
        batcher.enqueue(3)
    except BatcherClosed:
        pass
    else:
        raise AssertionError("a closed batcher takes no new request")
    assert batcher.idle
