"""Deliveries of one logic process leave in seq order, per user (or room)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any


class _Job:
    def __init__(self, keys: list[Hashable]) -> None:
        loop = asyncio.get_running_loop()
        self.keys = keys
        self.seqs: dict[Hashable, int] | None = None  # None until the job has its seqs
        self.known: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()


class SeqOrder:
    """Deliveries of one logic process leave in seq order, per user (or room).

    Concurrent sends to one user commit in seq order, but their deliveries run in
    independent tasks; a later seq could overtake an earlier one on the way to the socket.
    A send registers (`start`) before it allocates seqs, then `turn` waits for every other
    registered send sharing a key that has no seqs yet or a lower seq for that key, and
    `finish` lets the later ones go. Waits only point at lower seqs, so they cannot form a
    cycle. Pushes from two logic nodes may still cross: clients order by seq.

    Two sends that share keys are ordered the same way on every key they share: their seqs
    come from transactions that lock the seq rows until commit (or from one transaction, in
    order), so comparing one shared key is enough. That keeps a turn cheap for a group of
    hundreds of members with many sends in flight.
    """

    def __init__(self) -> None:
        self._jobs: dict[Hashable, list[_Job]] = defaultdict(list)

    def start(self, keys: Iterable[Hashable]) -> _Job:
        job = _Job(list(dict.fromkeys(keys)))
        for key in job.keys:
            self._jobs[key].append(job)
        return job

    async def turn(self, job: _Job, seqs: Mapping[Any, int]) -> None:
        mine = job.seqs = {k: v for k, v in seqs.items() if v}  # seq 0 (not stored): no order
        job.known.set_result(None)
        others: set[_Job] = set().union(*[self._jobs[key] for key in mine])  # the jobs sharing a key
        others.discard(job)
        for other in others:
            # shielded: a send whose caller gives up (its task cancelled) while waiting
            # here must not cancel the other send's futures, or that send's finish fails
            # and every later send sharing a key waits behind it for good
            if other.seqs is None and not other.done.done():
                await asyncio.shield(other.known)
            if other.seqs is None or other.done.done():  # finished, maybe without seqs
                continue
            if _earlier(other.seqs, mine):
                await asyncio.shield(other.done)

    def finish(self, job: _Job) -> None:
        if not job.known.done():
            job.known.set_result(None)
        if not job.done.done():
            job.done.set_result(None)
        for key in job.keys:
            jobs = self._jobs[key]
            jobs.remove(job)
            if not jobs:
                del self._jobs[key]


def _earlier(theirs: dict[Hashable, int], mine: dict[Hashable, int]) -> bool:
    """Whether `theirs` holds the lower seq on the first key both have (see SeqOrder)."""
    small, large = (theirs, mine) if len(theirs) <= len(mine) else (mine, theirs)
    for key in small:
        if key in large:
            return theirs[key] < mine[key]
    return False
