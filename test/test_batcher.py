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


async def test_with_a_spacing_requests_that_waited_for_a_batch_wait_until_a_full_one() -> None:
    """Spacing (an hour here: it never runs out in this test): the first request goes at
    once; those that come while it is handled wait on after it, together, until a full
    batch waits, then go as one; what is left waits again; close() fails it."""
    batches: list[list[int]] = []
    handled = asyncio.Event()
    release = asyncio.Event()

    async def handle(parts: list[int]) -> list[int | BaseException]:
        batches.append(parts)
        handled.set()
        await release.wait()
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=3, workers=1, spacing=3600)
    first = batcher.enqueue(1)
    await handled.wait()
    waiting = [batcher.enqueue(n) for n in (2, 3)]  # come while the first is handled
    release.set()
    assert await first == 1, "a quiet batcher: at once"
    for _ in range(20):  # the worker has every chance to run
        await asyncio.sleep(0)
    assert batches == [[1]] and not any(w.done() for w in waiting), "two of three: they wait"
    handled.clear()
    waiting += [batcher.enqueue(n) for n in (4, 5)]  # 2, 3, 4 make a full batch
    await handled.wait()
    assert await asyncio.gather(*waiting[:3]) == [2, 3, 4]
    assert batches == [[1], [2, 3, 4]]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting[3].done(), "the one left waits out the spacing again"
    await batcher.close()
    assert isinstance(waiting[3].exception(), BatcherClosed)


async def test_with_a_spacing_requests_one_after_another_never_wait() -> None:
    batches: list[list[int]] = []

    async def handle(parts: list[int]) -> list[int | BaseException]:
        batches.append(parts)
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=3, workers=1, spacing=3600)
    async with asyncio.timeout(30):  # a wait for the spacing would hang here
        for n in range(1, 6):
            assert await batcher.submit(n) == n
    assert batches == [[1], [2], [3], [4], [5]]


async def test_without_a_spacing_the_next_batch_starts_as_soon_as_one_ends() -> None:
    release = asyncio.Event()
    batches: list[list[int]] = []

    async def handle(parts: list[int]) -> list[int | BaseException]:
        batches.append(parts)
        if len(batches) == 1:
            await release.wait()
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=10, workers=1)
    first = batcher.enqueue(1)
    await asyncio.sleep(0)
    later = [batcher.enqueue(n) for n in (2, 3)]
    release.set()
    assert await asyncio.gather(first, *later) == [1, 2, 3]
    assert batches == [[1], [2, 3]]


async def test_with_space_lone_requests_one_after_another_wait_too() -> None:
    batches: list[list[int]] = []

    async def handle(parts: list[int]) -> list[int | BaseException]:
        batches.append(parts)
        return parts

    batcher: Batcher[int, int] = Batcher("test", handle, max_batch=3, workers=1, spacing=3600, space_lone=True)
    assert await batcher.submit(1) == 1, "a quiet batcher: at once"
    second = batcher.enqueue(2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done(), "the next request waits out the spacing, though nobody else waited"
    rest = [batcher.enqueue(n) for n in (3, 4)]  # a full batch: it goes
    assert await asyncio.gather(second, *rest) == [2, 3, 4]
    assert batches == [[1], [2, 3, 4]]
