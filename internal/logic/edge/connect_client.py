"""The connect nodes' ConnectInt, as logic calls it (an edge): pushes to the devices each
node holds, in per-node lanes (`Deliverer`), and the node's stub for other calls."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable

import grpc
from grpc import aio

from gim.internal.logic.edge.message_encoding import delivery_bytes, sent_mark_bytes
from gim.internal.logic.ports import Target
from gim.pkg import log, metrics, rpc
from gim.pkg.batcher import Batcher
from gim.pkg.pb import connect_int_pb2, connect_int_pb2_grpc

_log = log.get("delivery")

TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
# A node whose liveness key is gone (pkg/nodes.py) is most likely dead: one short try.
SUSPECT_TIMEOUT = 1.0
# Most one DeliverMessages call carries, in deliveries or KiB (whichever is more): a
# connect node serves it in one go, and gRPC takes 4 MiB at most.
LANE_UNITS = 4000
# Under load, a lane's next call starts this long after its previous one at the soonest
# (`Batcher` spacing; a lone sender's pushes never wait): a call, and each device's
# share of it (connect writes a device's pushes of one call in one send), costs much the
# same for one send's deliveries as for several. With LANE_UNITS 1000 and no spacing a
# call carried two sends to a 500-member group at most; with these, up to eight: 500 x
# 10 1.23 x the deliveries/s, connect's CPU a send 0.72 x, single chat 1.13 x.
LANE_SPACING = 0.02
# A node that fails for a transient reason (restarting, overloaded, a network blip) is
# tried again with growing pauses for this long, as long as it shows signs of life.
RETRY_FOR = 30.0
RETRY_PAUSE = (0.1, 2.0)  # first and longest pause between tries
# Sends waiting in one node's lane (each send's deliveries to the node are one part), at
# most; past that, new ones for the node are dropped (its devices get them by sync)
# rather than piling up behind a stuck node.
LANE_BACKLOG = 20_000


async def _total(queued: list[asyncio.Future[int]]) -> int:
    return sum(await asyncio.gather(*queued))


class Deliverer:
    """One channel per connect node address, created on first use, replaced when it fails
    and closed when no delivery used it for `idle_after` seconds (nodes come and go).

    Every delivery to a node goes through that node's lane: one `DeliverMessages` call at
    a time, and what is queued meanwhile goes together in the next call, in queue order,
    so deliveries reach a node in the order they were queued. A call carries at most
    LANE_UNITS (deliveries, or KiB of them). The request is written as bytes (see
    `message_encoding.delivery_bytes`). A node that does not know that call (an older connect) gets
    one `DeliverMessage` per device instead.
    """

    def __init__(
        self,
        timeout: float,
        idle_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        alive: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """`alive(conn_addr)`: whether a node still shows signs of life (retries stop when
        it does not)."""
        self._timeout = timeout
        self._alive = alive
        self._failures = log.Summary(_log)
        self.backlog = 0  # deliveries queued and not yet answered, on every lane
        self._idle_after = idle_after
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._used: dict[str, float] = {}
        self._single_only: set[str] = set()
        self._lanes: dict[str, Batcher[_Chunk, int]] = {}
        metrics.live(
            "gim_logic_delivery_queue", "delivery batches waiting for each connect node", self, _lane_depths,
            labels=("node",),
        )  # fmt: skip

    @property
    def nodes(self) -> set[str]:
        """The connect node addresses with an open channel."""
        return set(self._peers)

    def _peer(self, conn_addr: str) -> _Peer:
        self._used[conn_addr] = self._clock()
        peer = self._peers.get(conn_addr)
        if peer is None:
            peer = self._peers[conn_addr] = _Peer(rpc.channel(conn_addr, private=True))
        return peer

    def stub(self, conn_addr: str) -> connect_int_pb2_grpc.ConnectIntStub:
        """The node's ConnectInt, on its delivery channel (for calls beside deliveries)."""
        return self._peer(conn_addr).stub

    async def _close_idle(self) -> None:
        cutoff = self._clock() - self._idle_after
        for conn_addr in [a for a, used in self._used.items() if used < cutoff]:
            lane = self._lanes.get(conn_addr)
            if lane is not None and not lane.idle:
                continue
            _log.info("deliver_channel_idle", conn_addr=conn_addr)
            self._lanes.pop(conn_addr, None)
            self._used.pop(conn_addr, None)
            await self._drop(conn_addr)

    async def deliver(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> int:
        """Deliver each message to its device; returns how many deliveries succeeded.

        A failed delivery is logged, not raised: the message is already stored and the
        device gets it through sync when it (re)connects. Nodes in `suspects` (no sign of
        life) get one try with a short deadline, so a dead host never holds a send up for
        long, while a live node whose liveness key was lost (say, Redis restarted) still
        gets its pushes.
        """
        return await (await self.start(targets, suspects))

    async def start(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> asyncio.Future[int]:
        """`deliver` in two steps: when this returns, the deliveries are queued on their
        nodes' lanes behind what was queued before; the future it returns tells how many
        succeeded. A send queues in seq order (SeqOrder), then lets the next one queue
        while its own deliveries are on their way."""
        await self._close_idle()
        by_node: dict[str, list[bytes]] = defaultdict(list)
        for device, what in targets:
            if isinstance(what, int):
                part = sent_mark_bytes(device.device_id, device.user_id, what)
            else:
                part = delivery_bytes(device.device_id, device.user_id, what)
            by_node[device.conn_addr].append(part)
        queued: list[asyncio.Future[int]] = []
        for addr, parts in by_node.items():
            lane = self._lane(addr)
            if lane.pending > LANE_BACKLOG:
                self._failures.warning("deliver_backlog_full", kind=addr, conn_addr=addr, dropped=len(parts))
                metrics.LOGIC_DELIVERIES.labels("dropped").inc(len(parts))
                continue
            for chunk in _chunks(parts, addr in suspects):
                self.backlog += chunk.count
                answer = lane.enqueue(chunk)
                answer.add_done_callback(functools.partial(self._answered, chunk.count))
                queued.append(answer)
        return asyncio.ensure_future(_total(queued))

    def _answered(self, count: int, _answer: asyncio.Future[int]) -> None:
        self.backlog -= count

    def _lane(self, conn_addr: str) -> Batcher[_Chunk, int]:
        lane = self._lanes.get(conn_addr)
        if lane is None:

            async def call(parts: list[_Chunk]) -> list[int | BaseException]:
                merged = _Chunk(
                    b"".join(p.data for p in parts), sum(p.count for p in parts), any(p.suspect for p in parts)
                )
                delivered = await self._to_node(conn_addr, merged)
                return [p.count if delivered else 0 for p in parts]

            lane = self._lanes[conn_addr] = Batcher(
                f"deliver:{conn_addr}", call, LANE_UNITS, 1, size=_units, spacing=LANE_SPACING
            )
        return lane

    async def _to_node(self, conn_addr: str, chunk: _Chunk) -> int:
        """Deliver to one node. A failure for a transient reason is tried again: at once
        on a new channel (a node that restarted on the same address is reached without
        the old channel's reconnect backoff), then with growing pauses for RETRY_FOR
        seconds while the node shows signs of life. Later deliveries to the node wait
        behind in its lane, so they keep their order. A suspect node gets one short try."""
        timeout = min(self._timeout, SUSPECT_TIMEOUT) if chunk.suspect else self._timeout
        give_up = self._clock() + RETRY_FOR
        pause = RETRY_PAUSE[0]
        for attempt in itertools.count(1):
            try:
                return metrics.count_deliveries(chunk.count, await self._call_node(conn_addr, chunk, timeout))
            except aio.AioRpcError as exc:
                transient = exc.code() in TRANSIENT
                if transient:
                    await self._drop(conn_addr)
                if transient and not chunk.suspect and (attempt == 1 or await self._still_trying(conn_addr, give_up)):
                    if attempt > 1:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, RETRY_PAUSE[1])
                    continue
                self._failures.warning(
                    "deliver_failed",
                    kind=f"{conn_addr} {exc.code().name}",
                    conn_addr=conn_addr,
                    devices=chunk.count,
                    attempts=attempt,
                    reason=exc.details(),
                )
                metrics.LOGIC_DELIVERIES.labels("failed").inc(chunk.count)
                return 0
        raise AssertionError("unreachable")

    async def _still_trying(self, conn_addr: str, give_up: float) -> bool:
        if self._clock() >= give_up:
            return False
        return self._alive is None or await self._alive(conn_addr)

    async def _call_node(self, conn_addr: str, chunk: _Chunk, timeout: float) -> int:
        peer = self._peer(conn_addr)
        if chunk.count > 1 and conn_addr not in self._single_only:
            try:
                with metrics.client_call(peer.deliver_many):
                    resp = await peer.deliver_many(chunk.data, timeout=timeout)
                return chunk.count - len(resp.absent_device_ids)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self._single_only.add(conn_addr)
        reqs = connect_int_pb2.DeliverMessagesReq.FromString(chunk.data).messages
        results = await asyncio.gather(
            *(peer.stub.DeliverMessage(req, timeout=timeout) for req in reqs), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return len(reqs)

    async def forget(self, conn_addr: str) -> None:
        """A node that is gone for good: its lane and channel go (what is still queued
        for it fails fast: the node shows no sign of life)."""
        self._lanes.pop(conn_addr, None)
        self._used.pop(conn_addr, None)
        self._single_only.discard(conn_addr)
        await self._drop(conn_addr)

    async def _drop(self, conn_addr: str) -> None:
        """Close the node's channel (the next call opens a new one); its lane stays, so
        what is queued for the node keeps its order."""
        peer = self._peers.pop(conn_addr, None)
        if peer is not None:
            await peer.channel.close()

    async def close(self) -> None:
        for peer in self._peers.values():
            await peer.channel.close()
        self._peers.clear()
        self._used.clear()


def _lane_depths(deliverer: Deliverer) -> list[tuple[tuple[str, ...], float]]:
    return [((addr,), lane.pending) for addr, lane in list(deliverer._lanes.items())]


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """Serialized DeliverMessagesReq.messages elements (`count` deliveries) for one node."""

    data: bytes
    count: int
    suspect: bool = False  # the node showed no sign of life: one short try


def _units(chunk: _Chunk) -> int:
    """A chunk's weight in a lane call: its deliveries, or its KiB if that is more."""
    return max(chunk.count, len(chunk.data) >> 10)


def _chunks(parts: list[bytes], suspect: bool) -> list[_Chunk]:
    """The deliveries of one node cut into chunks of at most LANE_UNITS."""
    out: list[_Chunk] = []
    start, size = 0, 0
    for i, part in enumerate(parts):
        if i > start and max(i - start + 1, (size + len(part)) >> 10) > LANE_UNITS:
            out.append(_Chunk(b"".join(parts[start:i]), i - start, suspect))
            start, size = i, 0
        size += len(part)
    out.append(_Chunk(b"".join(parts[start:]), len(parts) - start, suspect))
    return out


class _Peer:
    """A connect node: its channel, its stub, and DeliverMessages taking request bytes."""

    def __init__(self, channel: aio.Channel) -> None:
        self.channel = channel
        self.stub = connect_int_pb2_grpc.ConnectIntStub(channel)
        self.deliver_many: aio.UnaryUnaryMultiCallable[bytes, connect_int_pb2.DeliverMessagesResp] = (
            channel.unary_unary(
                "/pb.ConnectInt/DeliverMessages", response_deserializer=connect_int_pb2.DeliverMessagesResp.FromString
            )
        )
