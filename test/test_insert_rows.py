"""`db.insert_rows`: a group message's rows over every message table in one round trip on
MySQL (a multi-statement query, values escaped by the driver), one statement per table on
SQLite; the same rows either way, and a failing statement fails the call at once."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from gim.internal.logic.message_store import MessageStore
from gim.internal.logic.values import MessageRow
from gim.pkg import db
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.schema import MessageShards
from gimtest.cluster import SHARDS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

HARD_BYTES = bytes(range(256)) + b"%s %(x)s ' \" \\ ; \xff\xfe\xc3"  # every byte, placeholders, quotes, bad UTF-8


def message(sender: int, content: bytes) -> MessageRow:
    return MessageRow(0, cx.ST_USER, sender, cx.RT_GROUP, 7, [1, 2], cx.MT_CUSTOM, content, 1)


async def test_every_byte_of_content_comes_back_from_every_table(engine: AsyncEngine) -> None:
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**12, 10**13)
    members = [base + i for i in range(4 * SHARDS)]  # every table
    seqs = await store.store(message(members[0], HARD_BYTES), members)
    for member in members:
        (stored,) = await store.after(member, 0, 10)
        assert (stored.seq, stored.row.content, stored.row.to_user_ids) == (seqs[member], HARD_BYTES, [1, 2])


async def test_rows_beyond_one_query_go_in_several(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SCRIPT_BYTES", 2_000)  # about 10 rows a query
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**12, 10**13)
    members = [base + i for i in range(120)]
    await store.store(message(members[0], b"c" * 150), members)
    for member in members:
        assert [m.seq for m in await store.after(member, 0, 10)] == [1]


async def test_a_failing_statement_fails_the_call_and_leaves_nothing(engine: AsyncEngine) -> None:
    """The duplicate is in the last table's INSERT: the error is raised by the call (not
    by a later statement), the transaction keeps none of the rows, the connection serves on."""
    shards = MessageShards(SHARDS)
    base = random.randrange(10**12, 10**13)
    users = [base + i for i in range(SHARDS)]
    columns = ("user_id", "seq", "request_id", "sender_type", "sender_id", "receiver_type", "receiver_id",
               "to_user_ids", "type", "content", "send_time", "status")  # fmt: skip
    inserts = {u: shards.table_for(u).insert() for u in users}
    rows = {inserts[u]: [(u, 1, 0, 1, u, 1, u, "", 1, b"x", 1, 1)] for u in users}
    rows[inserts[users[-1]]].append((users[-1], 1, 0, 1, 1, 1, 1, "", 1, b"y", 1, 1))  # (user_id, seq) again
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await db.insert_rows(conn, rows, columns)
    async with engine.connect() as conn:
        for user in users:
            table = shards.table_for(user)
            found = await conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.user_id == user))
            assert found.scalar() == 0, "rolled back whole"
