"""Sync read-ahead: the pages a node's syncing connections will ask for next, held.

A client syncing a backlog asks for it page by page (PT_SYNC from the last seq it has),
so each page costs a round trip client → connect → logic → database and back. Connect asks
logic for several pages at once instead (`LogicInt.Sync` with `pages`), answers the
client's next PT_SYNCs from the pages it holds, with one hop, and asks for the following
pages while the client still reads the last ones it holds (`due`), so that logic's work
overlaps the client's.

A held page goes only to the PT_SYNC that starts where it starts (after the last seq of
the page before), once, within HOLD_SECONDS; any other PT_SYNC of that connection drops
what it holds. The last page of an answer after which nothing more was stored is never
held: that PT_SYNC goes to logic, so the answer that tells the client it is up to date
also has whatever was stored in the meantime. Held bytes are bounded per node
(`max_bytes`): beyond it, syncs are asked one page at a time as without read-ahead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from gim.pkg import metrics
from gim.pkg.pb import logic_int_pb2

HOLD_SECONDS = 10.0  # a held page older than this is dropped (its senders' profiles may have changed)
LOW = 2  # pages held, at most, when the following ones are asked for


class _Held:
    __slots__ = ("pages", "until", "more_after", "asking")

    def __init__(self) -> None:
        self.pages: deque[tuple[int, bytes]] = deque()  # (the seq it starts after, a SyncOutput), in order
        self.until = 0.0
        self.more_after = 0  # logic has more after this seq (0: none, or not known)
        self.asking: asyncio.Future[None] | None = None  # the following pages are being asked for


class ReadAheads:
    """The pages held for a node's connections, by connection id."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0  # held now, all connections together
        self._held: dict[int, _Held] = {}
        metrics.live("gim_connect_read_ahead_bytes", "sync pages held for syncing clients, bytes", self, _bytes)

    def has_room(self, now: float) -> bool:
        """Whether a connection may have pages read ahead now (when the node holds its
        bound, pages held past HOLD_SECONDS are dropped first: a client that stopped paging
        must not keep read-ahead off for everybody)."""
        if self.bytes >= self.max_bytes:
            for conn_id in [c for c, held in self._held.items() if now >= held.until and held.asking is None]:
                self.drop(conn_id)
        return self.bytes < self.max_bytes

    async def take(self, conn_id: int, seq: int, now: float) -> bytes | None:
        """The page held for `conn_id` that starts after `seq` (waiting for it if it is
        being asked for), or None (and nothing is held for it any more)."""
        held = self._held.get(conn_id)
        if held is None:
            return None
        if not held.pages and held.asking is not None and held.more_after == seq:
            await held.asking
            if self._held.get(conn_id) is not held:
                return None
        if now < held.until and held.pages and held.pages[0][0] == seq:
            page = held.pages.popleft()[1]
            self.bytes -= len(page)
            if not held.pages and held.asking is None:
                del self._held[conn_id]
            return page
        self.drop(conn_id)
        return None

    def hold(self, conn_id: int, resp: logic_int_pb2.SyncResp, now: float) -> bytes:
        """Logic's answer of several pages: the first, to answer with now; the rest held."""
        self.drop(conn_id)
        held = _Held()
        self._held[conn_id] = held
        self._add(conn_id, held, resp.pages[1:], resp.page_last_seqs, resp.has_more, now)
        return resp.pages[0]

    def due(self, conn_id: int, now: float) -> int:
        """The seq from which the following pages should be asked for now (0: not now);
        `held` must be told how that went (`extend` or `failed`)."""
        held = self._held.get(conn_id)
        if held is None or held.asking is not None or not held.more_after or len(held.pages) > LOW:
            return 0
        if not self.has_room(now):
            return 0
        held.asking = asyncio.get_running_loop().create_future()
        return held.more_after

    def extend(self, conn_id: int, after: int, resp: logic_int_pb2.SyncResp, now: float) -> None:
        """The pages asked for after `after` (`due`) have come: held behind the others."""
        held = self._held.get(conn_id)
        if held is None or held.more_after != after:
            return
        self._add(conn_id, held, resp.pages, [after, *resp.page_last_seqs], resp.has_more, now)
        self._asked(held)

    def failed(self, conn_id: int, after: int) -> None:
        """Asking for the pages after `after` failed: the client's PT_SYNC for them goes to logic."""
        held = self._held.get(conn_id)
        if held is not None and held.more_after == after:
            held.more_after = 0
            self._asked(held)
            if not held.pages:
                del self._held[conn_id]

    def drop(self, conn_id: int) -> None:
        held = self._held.pop(conn_id, None)
        if held is not None:
            self.bytes -= sum(len(page) for _, page in held.pages)
            self._asked(held)

    def __len__(self) -> int:
        return len(self._held)

    def _add(
        self, conn_id: int, held: _Held, pages: Sequence[bytes], starts: Sequence[int], has_more: bool, now: float
    ) -> None:
        """Hold `pages`, page i starting after `starts[i]` (`starts` has one more: where
        the last one ends); the last one only if more follow it."""
        following = list(zip(starts, pages, strict=False))
        if following and not has_more:
            following.pop()  # nothing after it: asked again, with what was stored meanwhile
        held.more_after = starts[len(pages)] if has_more and len(starts) > len(pages) else 0
        for after, page in following:
            if self.bytes + len(page) > self.max_bytes:  # the node's bound: the rest is asked again
                held.more_after = after
                break
            held.pages.append((after, page))
            self.bytes += len(page)
        held.until = now + HOLD_SECONDS
        if not held.pages and held.asking is None:
            del self._held[conn_id]

    @staticmethod
    def _asked(held: _Held) -> None:
        if held.asking is not None:
            if not held.asking.done():
                held.asking.set_result(None)
            held.asking = None


def _bytes(aheads: ReadAheads) -> list[tuple[tuple[str, ...], float]]:
    return [((), aheads.bytes)]
