"""Sync read-ahead (issue 16): connect asks logic for several pages of a client's sync at
once and answers the client's next PT_SYNCs from them, asking for the following pages
while the client reads; the client sees exactly what a page-by-page sync gives it, and the
answer that ends a sync is always logic's own."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from gim.internal.connect.read_ahead import HOLD_SECONDS, ReadAheads
from gim.internal.logic import seqs
from gim.pkg import metrics
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.schema import SEQ_OBJECT_USER, MessageShards
from gimtest.cluster import SHARDS
from gimtest.waiting import until

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.cluster import Cluster


def page_of(*seqs: int, more: bool = True) -> bytes:
    return cx.SyncOutput(messages=[cx.Message(seq=s) for s in seqs], has_more=more).SerializeToString()


def answer(pages: list[list[int]], has_more: bool) -> li.SyncResp:
    """Logic's answer of several pages (each a list of seqs), as `sync_pages` builds it."""
    return li.SyncResp(
        pages=[page_of(*p, more=i < len(pages) - 1 or has_more) for i, p in enumerate(pages)],
        page_last_seqs=[p[-1] for p in pages],
        has_more=has_more,
    )


async def test_held_pages_go_once_to_the_sync_that_starts_where_they_start() -> None:
    aheads = ReadAheads(max_bytes=1 << 20)
    first = aheads.hold(7, answer([[1, 2], [3, 4], [5, 6]], has_more=True), now=0.0)
    assert first == page_of(1, 2)
    assert aheads.bytes == len(page_of(3, 4)) + len(page_of(5, 6))
    assert await aheads.take(7, 2, now=1.0) == page_of(3, 4)
    assert await aheads.take(7, 2, now=1.0) is None, "served once; a sync from elsewhere drops the rest"
    assert (len(aheads), aheads.bytes) == (0, 0)


async def test_the_last_page_before_the_end_is_never_held() -> None:
    """Nothing more after it when logic answered: the client's PT_SYNC for it goes to logic,
    whose answer then also holds what was stored meanwhile."""
    aheads = ReadAheads(max_bytes=1 << 20)
    aheads.hold(1, answer([[1, 2], [3, 4], [5]], has_more=False), now=0.0)
    assert await aheads.take(1, 2, now=0.0) == page_of(3, 4)
    assert await aheads.take(1, 4, now=0.0) is None
    assert aheads.due(1, 0.0) == 0
    assert (len(aheads), aheads.bytes) == (0, 0)


async def test_old_pages_are_not_served() -> None:
    aheads = ReadAheads(max_bytes=1 << 20)
    aheads.hold(1, answer([[1], [2], [3]], has_more=True), now=0.0)
    assert await aheads.take(1, 1, now=HOLD_SECONDS + 0.1) is None
    assert aheads.bytes == 0


async def test_a_node_holds_no_more_than_its_bound() -> None:
    """Many clients asking at once each get their first page; what is held stops at the
    node's bound, and a client that stopped paging does not keep it full beyond HOLD_SECONDS."""
    pages = answer([[1], [2], [3], [4]], has_more=True)
    bound = 2 * len(page_of(2))
    aheads = ReadAheads(max_bytes=bound)
    assert aheads.hold(1, pages, now=0.0) == page_of(1)
    assert aheads.bytes == 2 * len(page_of(2)), "two of the three following pages fit"
    assert aheads.hold(2, pages, now=0.0) == page_of(1), "answered, nothing held"
    assert aheads.bytes == bound and not aheads.has_room(1.0) and aheads.due(1, 1.0) == 0
    assert await aheads.take(1, 1, now=1.0) == page_of(2)
    assert await aheads.take(1, 2, now=1.0) == page_of(3)
    assert await aheads.take(1, 3, now=1.0) is None, "not held: asked of logic"
    aheads.hold(3, pages, now=0.0)
    assert aheads.has_room(HOLD_SECONDS + 1), "expired pages make room"
    assert (len(aheads), aheads.bytes) == (0, 0)


async def test_the_following_pages_are_asked_for_while_the_client_reads() -> None:
    aheads = ReadAheads(max_bytes=1 << 20)
    aheads.hold(1, answer([[1], [2], [3], [4]], has_more=True), now=0.0)
    assert aheads.due(1, 0.0) == 0, "three pages held: not yet"
    assert await aheads.take(1, 1, now=0.0) == page_of(2)
    after = aheads.due(1, 0.0)
    assert after == 4, "two left: the pages after the last held one"
    assert aheads.due(1, 0.0) == 0, "asked once"
    assert await aheads.take(1, 2, now=0.0) == page_of(3)
    assert await aheads.take(1, 3, now=0.0) == page_of(4)
    waiting = asyncio.create_task(aheads.take(1, 4, now=0.0))  # the client is faster than logic
    await asyncio.sleep(0)
    assert not waiting.done()
    aheads.extend(1, after, answer([[5], [6], [7]], has_more=False), now=0.0)
    assert await waiting == page_of(5)
    assert await aheads.take(1, 5, now=0.0) == page_of(6)
    assert await aheads.take(1, 6, now=0.0) is None, "the end is asked of logic again"
    assert (len(aheads), aheads.bytes) == (0, 0)


async def test_a_failed_ask_sends_the_waiting_sync_to_logic() -> None:
    aheads = ReadAheads(max_bytes=1 << 20)
    aheads.hold(1, answer([[1], [2]], has_more=True), now=0.0)
    after = aheads.due(1, 0.0)
    assert after == 2
    assert await aheads.take(1, 1, now=0.0) == page_of(2)
    waiting = asyncio.create_task(aheads.take(1, 2, now=0.0))
    await asyncio.sleep(0)
    aheads.failed(1, after)
    assert await waiting is None
    assert (len(aheads), aheads.bytes) == (0, 0)


async def store_backlog(engine: AsyncEngine, sender: int, user_id: int, count: int) -> None:
    """`count` messages from `sender` for `user_id`, straight in the database."""
    table = MessageShards(SHARDS).table_for(user_id)
    async with engine.begin() as conn:
        highest = (await seqs.allocate(conn, SEQ_OBJECT_USER, {user_id: count}))[user_id]
        rows = [
            dict(user_id=user_id, seq=seq, request_id=0, sender_type=cx.ST_USER, sender_id=sender,
                 receiver_type=cx.RT_USER, receiver_id=user_id, to_user_ids="", type=cx.MT_TEXT,
                 content=cx.Text(text=f"m{seq}").SerializeToString(), send_time=seq, status=1)
            for seq in range(highest - count + 1, highest + 1)
        ]  # fmt: skip
        await conn.execute(table.insert(), rows)


def served(source: str) -> float:
    return metrics.REGISTRY.get_sample_value("gim_connect_sync_pages_total", {"source": source}) or 0.0


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_backlog_of_many_pages_arrives_whole_and_in_order(
    cluster: Cluster, engine: AsyncEngine, transport: str
) -> None:
    """12 pages' worth: most pages come from what connect read ahead; a message sent while
    the client syncs is in the answer that ends the sync; nothing is held afterwards."""
    (sender,), (receiver,) = await asyncio.gather(cluster.new_user(), cluster.new_user())
    await store_backlog(engine, sender.user_id, receiver.user_id, 590)
    conn = await cluster.online(receiver, transport)
    read_ahead, from_logic = served("read_ahead"), served("logic")
    try:
        first = await conn.sync(0)
        assert [m.seq for m in first.messages] == list(range(1, 51)) and first.has_more
        await cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, cx.Text(text="late").SerializeToString())
        rest = await cluster.sync_all(conn, 50)
        assert [m.seq for m in rest] == list(range(51, 592))
        assert rest[-1].message_content == cx.Text(text="late").SerializeToString()
        assert rest[0].message_content == cx.Text(text="m51").SerializeToString()
        assert all(len(page) <= 50 for page in [first.messages])
    finally:
        await conn.close()
    assert served("read_ahead") - read_ahead >= 8, "most pages from what was read ahead"
    assert served("logic") - from_logic <= 4
    aheads = cluster.connect.context.read_aheads
    await until(lambda: not len(aheads), "the closed connection's pages are dropped")
    assert aheads.bytes == 0


async def test_logic_answers_pages_that_each_fit_a_frame(cluster: Cluster, engine: AsyncEngine) -> None:
    """LogicInt.Sync with `pages`: each page at most sync_page_size messages and one
    frame, the next starting after the last seq of the one before."""
    (sender,), (receiver,) = await asyncio.gather(cluster.new_user(), cluster.new_user())
    await store_backlog(engine, sender.user_id, receiver.user_id, 120)
    resp = await cluster.logic_int.Sync(li.SyncReq(user_id=receiver.user_id, seq=0, exact=True, pages=2))
    assert not resp.messages and resp.has_more
    pages = [cx.SyncOutput.FromString(p) for p in resp.pages]
    assert [[m.seq for m in p.messages] for p in pages] == [list(range(1, 51)), list(range(51, 101))]
    assert list(resp.page_last_seqs) == [50, 100]
    assert all(p.has_more for p in pages)
    one = await cluster.logic_int.Sync(li.SyncReq(user_id=receiver.user_id, seq=100, exact=True))
    assert [m.seq for m in one.messages] == list(range(101, 121)) and not one.has_more, "2021 contract unchanged"
