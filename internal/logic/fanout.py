"""Fan-out: a stored message pushed to every online device of its recipients, in seq order.

Three steps, each its own collaborator: the order (`SeqOrder`: one logic process hands
its pushes to the connect nodes in seq order per user), the routes (which devices are
online at which connect node, and which nodes show no sign of life) and the delivery
(the `Delivery` port: per-node lanes to connect). Nothing here fails a send: the message
is stored, and a device that misses its push gets it by sync.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Coroutine, Hashable, Iterable
from typing import Any

from gim.internal.logic.devices import DeviceStore
from gim.internal.logic.ports import Delivery, MessageFormat, Profiles, Target
from gim.internal.logic.seq_order import SeqOrder
from gim.internal.logic.values import Author, MessageRow, SenderType, User
from gim.pkg import log
from gim.pkg.nodes import NodeLiveness

_log = log.get("fanout")

# Deliveries queued (all nodes) beyond which a send waits for its own pushes, for
# BACKLOG_PAUSE seconds at most.
DELIVERY_BACKLOG = 20_000
BACKLOG_PAUSE = 1.0


class Turn:
    """A send's place in the seq order, from before its seqs are allocated until its
    pushes are queued (`FanOut.ordered`)."""

    def __init__(self, fanout: FanOut, keys: list[Hashable]) -> None:
        self._fanout = fanout
        self.job = fanout.order.start(keys)
        self.delivered: asyncio.Future[int] | None = None  # the pushes' outcome, once queued
        self.background: asyncio.Task[None] | None = None  # `push_soon`'s task

    def push_soon(
        self, author: Author, row: MessageRow, seqs: dict[int, int], profiles: dict[int, User], *also: Awaitable[None]
    ) -> None:
        """`push`, and `also` beside it, in a task of their own: the send answers at once
        (its message is committed), and the turn ends once its pushes are queued, so a
        later send to the same users still queues behind them."""
        self.background = self._fanout.spawn(self._push_then_end(author, row, seqs, profiles, also))

    async def _push_then_end(
        self,
        author: Author,
        row: MessageRow,
        seqs: dict[int, int],
        profiles: dict[int, User],
        also: Iterable[Awaitable[None]],
    ) -> None:
        try:
            await asyncio.gather(self.push(author, row, seqs, profiles), *also)
        except Exception as exc:  # the message is stored: its devices get it by sync
            self._fanout.failures.warning("push_failed", kind=type(exc).__name__, error=str(exc), recipients=len(seqs))
        finally:
            self._fanout.order.finish(self.job)

    async def settled(self) -> None:
        """Until the pushes are queued and answered by their connect nodes."""
        if self.background is not None:
            await self.background
        if self.delivered is not None:
            await self.delivered

    async def push(self, author: Author, row: MessageRow, seqs: dict[int, int], profiles: dict[int, User]) -> None:
        """Queue the pushes of `row`, stored under `seqs`, once every earlier seq of these
        users is queued. `profiles`: user profiles already at hand (the author's is
        pushed with the message). The author's own device gets no push but the mark of
        its own seq, so that connect keeps its push order."""
        targets, suspects = await self._fanout.routes(author, row, seqs, profiles)
        await self._fanout.order.turn(self.job, seqs)
        if targets:  # queued in seq order; the next send may queue behind while these travel
            self.delivered = await self._fanout.delivery.start(targets, suspects)


class FanOut:
    def __init__(
        self,
        devices: DeviceStore,
        nodes: NodeLiveness,
        profiles: Profiles,
        delivery: Delivery,
        format: MessageFormat,
    ) -> None:
        self.order = SeqOrder()
        self._devices = devices
        self._nodes = nodes
        self._profiles = profiles
        self.delivery = delivery
        self._format = format
        self.failures = log.Summary(_log)
        self._background: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def wait_queued(self) -> None:
        """Until every push started in the background is queued (before a shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def ordered(self, recipients: list[int]) -> AsyncIterator[Turn]:
        """A turn in the seq order of `recipients`, to take before their seqs are allocated;
        later sends to them wait for its pushes to be queued, or for it to end."""
        turn = Turn(self, list(recipients))
        try:
            yield turn
        finally:
            if turn.background is None:
                self.order.finish(turn.job)
        pushing = turn.delivered is not None or turn.background is not None
        if pushing and self.delivery.backlog > DELIVERY_BACKLOG:
            # The answer does not wait for the pushes (connect puts a device's pushes in
            # seq order, whichever logic node they come from), unless too many are queued:
            # then the senders slow down to the pace of delivery, for a moment at most.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(turn.settled()), BACKLOG_PAUSE)

    async def routes(
        self, author: Author, row: MessageRow, seqs: dict[int, int], profiles: dict[int, User]
    ) -> tuple[list[Target], set[str]]:
        """What to push to which online device, and the nodes that show no sign of life.
        If the routes cannot be looked up, nothing is pushed (logged): the message is
        stored, and connect or the client finds it by sync."""
        own_seq = seqs.get(author.sender_id, 0) if author.sender_type == SenderType.USER else 0
        try:
            online = await self._devices.online(list(seqs))
            if not online:
                return [], set()
            suspects = await self._nodes.suspects({d.conn_addr for d in online})
            sender = None
            if author.sender_type == SenderType.USER:
                if author.sender_id not in profiles:
                    profiles = await self._profiles.get_many([author.sender_id])
                sender = profiles.get(author.sender_id)
        except Exception as exc:
            self.failures.warning("push_routes_failed", kind=type(exc).__name__, error=str(exc), recipients=len(seqs))
            return [], set()
        sends = self._format.message_sends(row, sender, {d.user_id: seqs[d.user_id] for d in online})
        targets: list[Target] = []
        for device in online:
            if device.device_id != author.device_id:
                targets.append((device, sends[device.user_id]))
            elif own_seq:
                targets.append((device, own_seq))
        return targets, suspects
