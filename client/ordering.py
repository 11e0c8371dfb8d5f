"""Exactly once, in seq order: merging sync pages and realtime pushes (no I/O here).

A user's persisted messages carry gapless per-user seqs. Realtime pushes can arrive
out of order (concurrent sends are delivered independently), twice (once pushed, once
synced), or not at all (a connect node restarting). `Sequencer` is fed both sources and
hands back what may be delivered now; it asks for a sync (`needs_sync`) whenever a
push shows a gap, and holds pushes while a sync runs.

Why a gap that survives a sync can be skipped: a push is sent only after its message
was committed, and seqs of one user are allocated and committed in order, so a sync
that starts after a push arrived sees every stored seq below it. What it does not
return below such a push does not exist (a send that failed after allocating).
"""

from __future__ import annotations

import logging

from gim.pkg.pb import connect_ext_pb2 as cx

_log = logging.getLogger("gim.client.ordering")


class Sequencer:
    def __init__(self, last: int | None = None) -> None:
        # Highest seq handed out; None = not known yet, the first sync starts at 0
        # ("after the highest seq any of the user's devices acknowledged").
        self.last = last
        self.syncing = False
        self.needs_sync = True  # a fresh sequencer starts with a sync
        self._held: dict[int, cx.Message] = {}
        self._floor = 0  # the highest held seq when the running sync started

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, message: cx.Message) -> list[cx.Message]:
        """A realtime push; returns the messages that may be delivered now."""
        if message.seq == 0:  # not persisted: no place in the sequence
            return [message]
        if (self.last is not None and message.seq <= self.last) or message.seq in self._held:
            return []
        self._held[message.seq] = message
        if self.syncing:
            return []
        return self._settle(after_sync=False)

    def begin_sync(self) -> int:
        """A sync starts; returns the seq to sync after."""
        self.syncing = True
        self.needs_sync = False
        self._floor = max(self._held, default=0)
        return self.last or 0

    def page(self, messages: list[cx.Message]) -> list[cx.Message]:
        """One page of the running sync (in seq order); returns what to deliver."""
        out = []
        for message in messages:
            if self.last is None or message.seq > self.last:
                self.last = message.seq
                out.append(message)
        return out

    def end_sync(self) -> list[cx.Message]:
        """The sync reached has_more = false; returns held pushes that now follow."""
        self.syncing = False
        return self._settle(after_sync=True)

    def abort_sync(self) -> None:
        """The connection dropped mid-sync; a new one syncs again."""
        self.syncing = False
        self.needs_sync = True

    def _settle(self, after_sync: bool) -> list[cx.Message]:
        out: list[cx.Message] = []
        while True:
            out.extend(self._drain())
            if not self._held:
                return out
            low = min(self._held)
            if after_sync and low <= self._floor:
                if self.last is not None:  # (None: the first push sets the start, no gap)
                    _log.warning("seqs %d to %d do not exist after a sync: skipped", self.last + 1, low - 1)
                self.last = low - 1
                continue
            self.needs_sync = True
            return out

    def _drain(self) -> list[cx.Message]:
        if self.last is None:
            return []
        for seq in [s for s in self._held if s <= self.last]:
            del self._held[seq]
        out = []
        while (message := self._held.pop(self.last + 1, None)) is not None:
            out.append(message)
            self.last += 1
        return out


class RoomSeqs:
    """Room messages: per-room seqs, each delivered once, never synced.

    A room message can come twice or out of order: live pushes (pub/sub) and the replay
    of kept messages on (re)subscribe reach the connection by different paths. So seen
    seqs are remembered (the last `WINDOW`), not just the highest, and a resubscription
    asks for the kept messages from `LOOK_BACK` before the highest seen, so one that was
    in flight when the connection dropped still comes; the duplicates are dropped here.
    """

    WINDOW = 4096
    LOOK_BACK = 256

    def __init__(self) -> None:
        self.room_id = 0
        self.last = 0
        self._seen: set[int] = set()

    def subscribe(self, room_id: int) -> int:
        """Switch rooms; returns the seq to (re)subscribe after (0 for a new room)."""
        if room_id != self.room_id:
            self.room_id, self.last = room_id, 0
            self._seen.clear()
        # seq 0 asks for no replay at all, so a look-back never goes below 1
        return max(self.last - self.LOOK_BACK, 1) if self.last else 0

    def accept(self, message: cx.Message) -> bool:
        if message.receiver_id != self.room_id:
            return False
        if message.seq == 0:
            return True
        if message.seq in self._seen or message.seq <= self.last - self.WINDOW:
            return False
        self._seen.add(message.seq)
        if message.seq > self.last:
            self.last = message.seq
            if len(self._seen) > 2 * self.WINDOW:
                self._seen = {s for s in self._seen if s > self.last - self.WINDOW}
        return True
