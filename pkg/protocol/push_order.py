"""Per-connection seq order of pushes: a device never gets seq N+1 before N.

Consecutive messages to one user can be stored by different logic nodes, and their pushes
can cross on the way to the connect node that holds the device. A 2021 client shows
messages in arrival order, so the order is restored here, where every push of a device
passes. `PushOrder` is the pure part (no I/O, no timers): pushes go in with their seq,
bytes to write come out in seq order.

- `last` is the highest seq this device has been given (or skipped); it starts at the
  user's highest seq when the device signs in (everything up to there the client gets by
  its sync after sign-in). A logic that does not say (an older one) gets no ordering:
  the session then has no `PushOrder` and writes pushes as they come.
- seq 0 (not stored) goes straight out.
- seq <= last: already given (by an earlier push, or by a gap fill): dropped.
- seq == last + 1: out at once, with whatever held seqs follow it contiguously.
- seq > last + 1: held; the connection asks for the missing seqs (`waiting` turns true)
  if they do not arrive soon, by a sync from `last` (`fill`).
- A "sent" marker (the device sent that seq itself: nothing to push) moves `last` on
  like a push that writes nothing.

- While the client syncs (from its sign-in to its first sync's answer, while a PT_SYNC is
  with logic, or while an answer said has_more and the next page is expected), every push
  is held: the sync answer goes out first and moves `last` past what it carried, so a push
  is neither shown twice (in the answer and as a push) nor before older messages the
  answer brings, nor moves a client's position (the highest seq it has, which its sync
  starts from) past messages it has not got yet.

Nothing is ever skipped while the connection lives: the client's position (the highest
seq it has, which it syncs from) must never pass a message it has not got. What is held
is bounded (MAX_HELD pushes): past that `offer` raises `HeldTooMany`, and the session
closes the connection instead, so that the client reconnects and syncs.
"""

from __future__ import annotations

MAX_HELD = 256
SENT = b""  # a held "sent by this device" marker: nothing to write


class HeldTooMany(Exception):
    """More than MAX_HELD pushes wait behind a missing seq."""


class PushOrder:
    __slots__ = ("last", "held", "syncing", "asking", "failed_fills", "started")

    def __init__(self, last: int) -> None:
        self.last = last
        self.held: dict[int, bytes] | None = None  # seq -> bytes (SENT), only while a gap is open
        self.syncing = False  # the client syncs: pushes wait for its answer
        self.asking = False  # a PT_SYNC of the client is with logic now
        self.failed_fills = 0  # gap fills in a row that logic did not answer
        self.started = False  # a sync was answered, or pushes went without one

    @property
    def waiting(self) -> bool:
        """Pushes are held behind a gap."""
        return bool(self.held)

    @property
    def wanted(self) -> int:
        """The highest held seq: a gap fill should reach it."""
        return max(self.held) if self.held else 0

    def offer(self, seq: int, data: bytes) -> list[bytes]:
        """A push of `seq` (or, with `data` == SENT, a sent marker): what to write now."""
        if seq <= 0:  # not stored: no place in the order
            return [data] if data else []
        if seq <= self.last:
            return []
        if seq > self.last + 1 or self.syncing:
            if self.held is None:
                self.held = {}
            self.held[seq] = data
            if len(self.held) > MAX_HELD:
                raise HeldTooMany(f"{len(self.held)} pushes held behind seq {self.last + 1}")
            return []
        self.last = seq
        out = [data] if data else []
        return out + self._release() if self.held else out

    def fill(self, synced: list[tuple[int, bytes]], upto: int) -> list[bytes]:
        """Stored messages after `last` from a sync that covered every seq up to `upto`
        (the highest held when it was asked), in seq order: they and what is held go out
        in order. Up to `upto` a seq that neither holds does not exist (a send that
        failed): skipped. Past it, only what follows on (a push still on its way there
        is waited for)."""
        out = self.advance(synced)
        return out + self._release(upto=upto)

    def synced(self, highest: int, more: bool) -> list[bytes]:
        """The client got a sync answer whose highest seq is `highest` (0: none); `more`:
        it said has_more, so the client is expected to ask for the next page. What is held
        and follows now goes out (after the answer)."""
        self.last = max(self.last, highest)
        self.started = True
        self.syncing = more
        return [] if more else self._release()

    def has_all_after(self, seq: int) -> bool:
        """Whether a client syncing from `seq` already has every message of its user: this
        is its first sync since sign-in, nothing came since (nothing held: every push waits
        for that sync), and `seq` reaches `last`, the user's highest seq at sign-in (0, which
        asks "after the highest ack", only when the user has no message at all). What is
        stored later is pushed to the device, in order, as after any sync answer."""
        return not self.started and not self.held and (seq >= self.last > 0 or self.last == 0)

    def stop_syncing(self) -> list[bytes]:
        """The client did not ask for the next page after all: held pushes that follow go."""
        self.syncing = False
        self.started = True
        return self._release()

    def sync_failed(self, asked: int) -> list[bytes]:
        """The client's sync from `asked` failed (logic did not answer). If it was its first
        since sign-in, the client may hold less than `last` (the user's highest seq at
        sign-in, which that sync was to bring): `last` goes back to `asked`, so that later
        pushes wait for the seqs in between (a gap fill brings them, in order) instead of
        passing them. (`asked` 0 means "after the highest ack": no position to go back to.)"""
        if not self.started and 0 < asked < self.last:
            self.last = asked
        return self.stop_syncing()

    def advance(self, synced: list[tuple[int, bytes]]) -> list[bytes]:
        """Part of a gap fill (a sync page that does not reach the held pushes yet): the
        stored messages after `last`, in seq order, and what held ones follow them."""
        out: list[bytes] = []
        for seq, data in synced:
            if seq > self.last:
                was = self.held.pop(seq, None) if self.held else None
                self.last = seq
                if was != SENT:
                    out.append(data)
        return out + self._release()

    def _release(self, upto: int = 0) -> list[bytes]:
        """Held pushes that now follow `last` contiguously, and all of those up to `upto`."""
        held = self.held
        out: list[bytes] = []
        if held:
            for seq in sorted(held):
                if seq > self.last + 1 and seq > upto:
                    break
                data = held.pop(seq)
                if seq > self.last:
                    self.last = seq
                    if data:
                        out.append(data)
        if not held:
            self.held = None
        return out
