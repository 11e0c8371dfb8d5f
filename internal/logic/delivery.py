"""Pushing messages to devices through the connect nodes that hold them."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from typing import Any

import grpc
from grpc import aio

from gim.internal.logic.devices import OnlineDevice
from gim.pkg import log, rpc
from gim.pkg.batcher import Batcher
from gim.pkg.pb import connect_ext_pb2, connect_int_pb2, connect_int_pb2_grpc

_log = log.get("delivery")

Target = tuple[OnlineDevice, connect_ext_pb2.MessageSend]

# A node whose liveness key is gone (pkg/nodes.py) is most likely dead: one short try.
SUSPECT_TIMEOUT = 1.0
# Most deliveries one DeliverMessages call carries when concurrent sends are merged.
LANE_BATCH = 1000


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
    """

    def __init__(self) -> None:
        self._jobs: dict[Hashable, list[_Job]] = defaultdict(list)

    def start(self, keys: Iterable[Hashable]) -> _Job:
        job = _Job(list(dict.fromkeys(keys)))
        for key in job.keys:
            self._jobs[key].append(job)
        return job

    async def turn(self, job: _Job, seqs: Mapping[Any, int]) -> None:
        job.seqs = {k: v for k, v in seqs.items() if v}  # seq 0 (not stored): no order
        job.known.set_result(None)
        while waits := self._blockers(job):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    def _blockers(self, job: _Job) -> set[asyncio.Future[None]]:
        assert job.seqs is not None
        waits = set()
        for key, seq in job.seqs.items():
            for other in self._jobs[key]:
                if other is job or other.done.done():
                    continue
                if other.seqs is None:
                    waits.add(other.known)
                elif other.seqs.get(key, seq) < seq:
                    waits.add(other.done)
        return waits

    def finish(self, job: _Job) -> None:
        if not job.known.done():
            job.known.set_result(None)
        job.done.set_result(None)
        for key in job.keys:
            jobs = self._jobs[key]
            jobs.remove(job)
            if not jobs:
                del self._jobs[key]


class Deliverer:
    """One channel per connect node address, created on first use, replaced when it fails
    and closed when no delivery used it for `idle_after` seconds (nodes come and go).

    All the devices of one node go in one `DeliverMessages` call. A node that does not
    know that call (an older connect) gets one `DeliverMessage` per device instead.
    """

    def __init__(
        self, timeout: float, idle_after: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._timeout = timeout
        self._idle_after = idle_after
        self._clock = clock
        self._stubs: dict[str, connect_int_pb2_grpc.ConnectIntStub] = {}
        self._channels: dict[str, aio.Channel] = {}
        self._used: dict[str, float] = {}
        self._single_only: set[str] = set()
        self._lanes: dict[str, Batcher[list[connect_int_pb2.DeliverMessageReq], int]] = {}

    @property
    def nodes(self) -> set[str]:
        """The connect node addresses with an open channel."""
        return set(self._channels)

    def _stub(self, conn_addr: str) -> connect_int_pb2_grpc.ConnectIntStub:
        self._used[conn_addr] = self._clock()
        stub = self._stubs.get(conn_addr)
        if stub is None:
            channel = self._channels[conn_addr] = rpc.channel(conn_addr, private=True)
            stub = self._stubs[conn_addr] = connect_int_pb2_grpc.ConnectIntStub(channel)
        return stub

    async def _close_idle(self) -> None:
        cutoff = self._clock() - self._idle_after
        for conn_addr in [a for a, used in self._used.items() if used < cutoff]:
            _log.info("deliver_channel_idle", conn_addr=conn_addr)
            await self._drop(conn_addr)

    async def deliver(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> int:
        """Deliver each message to its device; returns how many deliveries succeeded.

        A failed delivery is logged, not raised: the message is already stored and the
        device gets it through sync when it (re)connects. Nodes in `suspects` (no sign of
        life) get one try with a short deadline, so a dead host never holds a send up for
        long, while a live node whose liveness key was lost (say, Redis restarted) still
        gets its pushes. Deliveries of concurrent sends to one node travel together: while
        a call to a node is in flight, what comes for it waits and goes in the next call,
        in arrival order.
        """
        by_node: dict[str, list[connect_int_pb2.DeliverMessageReq]] = defaultdict(list)
        for device, message in targets:
            by_node[device.conn_addr].append(
                connect_int_pb2.DeliverMessageReq(device_id=device.device_id, message_send=message)
            )
        results = await asyncio.gather(
            *(
                self._to_node(addr, reqs, True) if addr in suspects else self._lane(addr).submit(reqs)
                for addr, reqs in by_node.items()
            )
        )
        await self._close_idle()
        return sum(results)

    def _lane(self, conn_addr: str) -> Batcher[list[connect_int_pb2.DeliverMessageReq], int]:
        """One call at a time per node; what comes meanwhile goes together in the next."""
        lane = self._lanes.get(conn_addr)
        if lane is None:

            async def call(parts: list[list[connect_int_pb2.DeliverMessageReq]]) -> list[int | BaseException]:
                delivered = await self._to_node(conn_addr, [req for part in parts for req in part], False)
                return [len(part) if delivered else 0 for part in parts]

            lane = self._lanes[conn_addr] = Batcher(f"deliver:{conn_addr}", call, LANE_BATCH, 1, size=len)
        return lane

    async def _to_node(self, conn_addr: str, reqs: list[connect_int_pb2.DeliverMessageReq], suspect: bool) -> int:
        """Deliver to one node; a channel that failed is replaced and tried once more, so a
        node that restarted on the same address is reached at once, not after the old
        channel's reconnect backoff."""
        attempts = 1 if suspect else 2
        timeout = min(self._timeout, SUSPECT_TIMEOUT) if suspect else self._timeout
        for attempt in range(1, attempts + 1):
            try:
                return await self._call_node(conn_addr, reqs, timeout)
            except aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    await self._drop(conn_addr)
                    if attempt < attempts:
                        continue
                _log.warning(
                    "deliver_failed",
                    conn_addr=conn_addr,
                    devices=len(reqs),
                    status=exc.code().name,
                    reason=exc.details(),
                )
        return 0

    async def _call_node(self, conn_addr: str, reqs: list[connect_int_pb2.DeliverMessageReq], timeout: float) -> int:
        stub = self._stub(conn_addr)
        if len(reqs) > 1 and conn_addr not in self._single_only:
            try:
                resp = await stub.DeliverMessages(connect_int_pb2.DeliverMessagesReq(messages=reqs), timeout=timeout)
                return len(reqs) - len(resp.absent_device_ids)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self._single_only.add(conn_addr)
        results = await asyncio.gather(
            *(stub.DeliverMessage(req, timeout=timeout) for req in reqs), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return len(reqs)

    async def _drop(self, conn_addr: str) -> None:
        self._lanes.pop(conn_addr, None)
        self._used.pop(conn_addr, None)
        self._stubs.pop(conn_addr, None)
        channel = self._channels.pop(conn_addr, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
        self._used.clear()
