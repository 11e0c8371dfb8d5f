"""Group concurrent requests into batches handled together (say, one transaction).

Requests that arrive while earlier batches are being handled wait and go together in the
next one, so batches grow with the load and cost nothing when it is light (a lone request
is handled at once). With a `spacing`, under load (the previous batch held more than one
request, or requests already waited when it ended) a batch starts no sooner than that
after the previous one started, unless a full batch is waiting: where each batch costs
much whatever its size, fewer, fuller batches for a wait of at most `spacing`. A request
that finds the batcher quiet never waits, nor, unless `space_lone`, a caller whose
requests come one after another (`space_lone`: for callers that each keep one request
on its way and fill the next meanwhile, as connect nodes do with their sign-in calls).
A batch is all or nothing: when its handler raises, its requests are
handled one by one, so that one bad request fails alone.

Every caller is answered, whatever happens: a handler that returns the wrong number of
results fails its whole batch with `BatchMismatch`; a worker stopped by a BaseException
fails its batch with it (cancellation: `BatcherClosed`); `close()` fails whatever is still queued
with `BatcherClosed` and refuses new requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gim.pkg import log

_log = log.get("batcher")

T = TypeVar("T")
R = TypeVar("R")

# The handler answers each request of the batch, in order, with a result or an error.
Handler = Callable[[list[T]], Awaitable[list[R | BaseException]]]


class BatcherClosed(Exception):
    """The batcher was closed before the request was handled."""


class BatchMismatch(Exception):
    """A handler answered a batch with a number of results other than its size (a bug)."""


class Batcher(Generic[T, R]):
    def __init__(
        self,
        name: str,
        handler: Handler[T, R],
        max_batch: int,
        workers: int,
        size: Callable[[T], int] = lambda _: 1,
        spacing: float = 0.0,
        space_lone: bool = False,
    ) -> None:
        """`max_batch` bounds the sum of `size(request)` of one batch (one request at least);
        `spacing`: seconds from one batch's start to the next's, at least (see above)."""
        self._name = name
        self._handler = handler
        self._max_batch = max_batch
        self._size = size
        self._max_workers = workers
        self._spacing = spacing
        self._space_lone = space_lone
        self._last_start = float("-inf")  # loop time a batch last started (with a spacing)
        self._last_count = 0  # requests in that batch
        self._full: asyncio.Future[None] | None = None  # set once a full batch waits out a spacing
        self._workers = 0
        self._queue: deque[tuple[T, asyncio.Future[R], int]] = deque()  # (request, answer, size)
        self._queued = 0  # the sum of the queue's sizes
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being handled."""
        return not self._queue and self._workers == 0

    @property
    def workers(self) -> set[asyncio.Task[None]]:
        """The tasks handling batches now (a copy)."""
        return set(self._tasks)

    async def submit(self, request: T) -> R:
        return await self.enqueue(request)

    def enqueue(self, request: T) -> asyncio.Future[R]:
        """Queue `request` now (requests are handled in the order they are queued); the
        future holds its answer."""
        if self._closed:
            raise BatcherClosed(f"{self._name} is closed")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        size = self._size(request)
        self._queue.append((request, answer, size))
        self._queued += size
        if self._full is not None and self._queued >= self._max_batch and not self._full.done():
            self._full.set_result(None)
        if self._workers < self._max_workers:
            self._workers += 1
            task = loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return answer

    async def _work(self) -> None:
        batch: list[tuple[T, asyncio.Future[R], int]] = []
        continuing = False  # this worker handled a batch, and requests waited as it ended
        try:
            while self._queue:
                if self._spacing > 0:
                    await self._space(continuing)
                continuing = True
                first = self._queue.popleft()
                batch, total = [first], first[2]
                while self._queue and total + self._queue[0][2] <= self._max_batch:
                    batch.append(self._queue.popleft())
                    total += batch[-1][2]
                self._queued -= total
                self._last_count = len(batch)
                results = await self._results([request for request, _, _ in batch])
                for (_, answer, _), result in zip(batch, results, strict=True):
                    _settle(answer, result)
                batch = []
        except BaseException as exc:  # cancelled or worse: nobody of this batch waits forever
            failure = BatcherClosed(f"{self._name} stopped") if isinstance(exc, asyncio.CancelledError) else exc
            for _, answer, _ in batch:
                _settle(answer, failure)
            raise
        finally:
            self._workers -= 1

    async def _space(self, continuing: bool) -> None:
        """Under load (see above), until `spacing` after the last batch's start or a full
        batch waits."""
        loaded = continuing or self._last_count > 1 or self._space_lone
        loop = asyncio.get_running_loop()
        wait = self._last_start + self._spacing - loop.time()
        if loaded and wait > 0 and self._queued < self._max_batch:
            self._full = loop.create_future()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full, wait)
            finally:
                self._full = None
        self._last_start = loop.time()

    async def _results(self, requests: list[T]) -> list[R | BaseException]:
        """The handler's answers to `requests`, one each, in order."""
        try:
            results = await self._handler(requests)
            if len(results) != len(requests):
                raise BatchMismatch(f"{self._name}: {len(results)} results for {len(requests)} requests")
            return results
        except BatchMismatch as exc:
            _log.error("batch_mismatch", batcher=self._name, error=str(exc))
            return [exc] * len(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
            _log.warning("batch_failed", batcher=self._name, size=len(requests), error=repr(exc))
            return [await self._alone(request) for request in requests]

    async def close(self) -> None:
        """Refuse new requests, fail those still queued with `BatcherClosed`, stop the
        workers (a batch being handled fails with `BatcherClosed` too) and wait for them."""
        self._closed = True
        self._queued = 0
        while self._queue:
            _, answer, _ = self._queue.popleft()
            _settle(answer, BatcherClosed(f"{self._name} is closed"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _alone(self, request: T) -> R | BaseException:
        try:
            results = await self._handler([request])
        except Exception as exc:
            return exc
        if len(results) != 1:
            return BatchMismatch(f"{self._name}: {len(results)} results for 1 request")
        return results[0]


def _settle(answer: asyncio.Future[R], result: R | BaseException) -> None:
    if answer.done():  # the caller gave up; what was done stays done
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
