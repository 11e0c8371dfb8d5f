"""Batcher: requests that arrive together are handled together, within the size bound."""

from __future__ import annotations

import asyncio

from gim.pkg.batcher import Batcher


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
