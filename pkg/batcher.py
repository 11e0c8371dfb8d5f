"""Group concurrent requests into batches handled together (say, one transaction).

Requests that arrive while earlier batches are being handled wait and go together in the
next one, so batches grow with the load and cost nothing when it is light (a lone request
is handled at once). A batch is all or nothing: when its handler raises, its requests are
handled one by one, so that one bad request fails alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gim.pkg import log

_log = log.get("batcher")

T = TypeVar("T")
R = TypeVar("R")

# The handler answers each request of the batch, in order, with a result or an error.
Handler = Callable[[list[T]], Awaitable[list[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(
        self, name: str, handler: Handler[T, R], max_batch: int, workers: int, size: Callable[[T], int] = lambda _: 1
    ) -> None:
        """`max_batch` bounds the sum of `size(request)` of one batch (one request at least)."""
        self._name = name
        self._handler = handler
        self._max_batch = max_batch
        self._size = size
        self._max_workers = workers
        self._workers = 0
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being handled."""
        return not self._queue and self._workers == 0

    async def submit(self, request: T) -> R:
        return await self.enqueue(request)

    def enqueue(self, request: T) -> asyncio.Future[R]:
        """Queue `request` now (requests are handled in the order they are queued); the
        future holds its answer."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._queue.append((request, answer))
        if self._workers < self._max_workers:
            self._workers += 1
            task = loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return answer

    async def _work(self) -> None:
        try:
            while self._queue:
                first = self._queue.popleft()
                batch, total = [first], self._size(first[0])
                while self._queue and total + self._size(self._queue[0][0]) <= self._max_batch:
                    batch.append(self._queue.popleft())
                    total += self._size(batch[-1][0])
                requests = [request for request, _ in batch]
                try:
                    results = await self._handler(requests)
                except Exception as exc:
                    if len(batch) == 1:
                        results = [exc]
                    else:
                        _log.warning("batch_failed", batcher=self._name, size=len(batch), error=repr(exc))
                        results = [await self._alone(request) for request in requests]
                for (_, answer), result in zip(batch, results, strict=True):
                    if answer.done():  # the caller gave up; what was done stays done
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self._workers -= 1

    async def _alone(self, request: T) -> R | BaseException:
        try:
            return (await self._handler([request]))[0]
        except Exception as exc:
            return exc
