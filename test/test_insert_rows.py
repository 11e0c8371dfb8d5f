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


COLUMNS = ("user_id", "seq", "request_id", "sender_type", "sender_id", "receiver_type", "receiver_id",
           "to_user_ids", "type", "content", "send_time", "status")  # fmt: skip


async def test_no_backslash_escapes_neither_breaks_nor_injects(engine: AsyncEngine) -> None:
    """With NO_BACKSLASH_ESCAPES a backslash is a plain character, so content escaped with
    backslashes (\\' for \') would end its literal at that quote and run the rest as
    SQL: here another row (seq 99) and a comment over the rest of the query. The rows
    come back byte for byte, and only they."""
    shards = MessageShards(SHARDS)
    user = random.randrange(10**12, 10**13)
    table = shards.table_for(user)
    injection = f"\\', 1, 1), ({user}, 99, 0, 1, 1, 1, 1, 1, 1, 0x78, 1, 1) -- ".encode()
    contents = [b'it\'s \\ "x" \\', HARD_BYTES, b"", b"\\", injection]
    to_user_ids = ["\\'", "a'b\\", "", "\\", "\\', 1, 1) -- "]
    rows = [(user, i + 1, 0, 1, user, 1, user, to_user_ids[i], 1, c, 1, 1) for i, c in enumerate(contents)]
    async with engine.begin() as conn:
        if db.is_mysql(conn):
            await conn.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
            assert "NO_BACKSLASH_ESCAPES" in str((await conn.exec_driver_sql("SELECT @@SESSION.sql_mode")).scalar())
        try:
            await db.insert_rows(conn, {table.insert(): rows}, COLUMNS)
        finally:  # the pooled connection goes back as it came
            if db.is_mysql(conn):
                await conn.exec_driver_sql("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
    async with engine.connect() as conn:
        query = sa.select(table.c.seq, table.c.to_user_ids, table.c.content).where(table.c.user_id == user)
        found = [(int(s), str(t), bytes(c)) for s, t, c in await conn.execute(query.order_by(table.c.seq))]
    assert found == [(i + 1, to_user_ids[i], c) for i, c in enumerate(contents)]


async def test_a_failing_statement_is_reported_without_its_values(engine: AsyncEngine) -> None:
    """On MySQL the error names the failing INSERT with placeholders, not the query with
    the content it carried."""
    shards = MessageShards(SHARDS)
    user = random.randrange(10**12, 10**13)
    table = shards.table_for(user)
    rows = [(user, 1, 0, 1, user, 1, user, "secret-ids", 1, b"secret-content", 1, 1)] * 2  # (user_id, seq) twice
    with pytest.raises(sa.exc.IntegrityError) as raised:
        async with engine.begin() as conn:
            await db.insert_rows(conn, {table.insert(): rows}, COLUMNS)
    async with engine.connect() as conn:
        assert raised.value.statement == db.driver_sql(conn, table.insert(), COLUMNS)  # placeholders
    assert "secret" not in str(raised.value.statement)
    if db.is_mysql(engine):  # SQLite's error lists its parameters, as SQLAlchemy shows them
        assert "secret" not in str(raised.value)


async def test_no_rows_run_nothing(engine: AsyncEngine) -> None:
    """No tables, or tables without rows: no statement at all (an empty query would fail).
    MySQL counts the statements a session sent (Questions): only the two counting it."""
    shards = MessageShards(SHARDS)
    inserts = [shards.table_for(u).insert() for u in range(SHARDS)]
    sent: list[str] = []

    def count(*args: object) -> None:
        sent.append(str(args[2]))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with engine.begin() as conn:
            questions = "SHOW SESSION STATUS LIKE 'Questions'"
            before = (await conn.exec_driver_sql(questions)).one()[1] if db.is_mysql(conn) else 0
            await db.insert_rows(conn, {}, COLUMNS)
            await db.insert_rows(conn, {insert: [] for insert in inserts}, COLUMNS)
            after = (await conn.exec_driver_sql(questions)).one()[1] if db.is_mysql(conn) else 1
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert int(after) - int(before) == 1, "only the second count"
    assert [s for s in sent if "INSERT" in s.upper()] == []


async def test_shared_values_are_written_once_per_distinct_run(engine: AsyncEngine) -> None:
    """`shared`: the rows of two messages interleaved, each row with its own user, seq and
    last column around its message's values: every row comes back with its own values."""
    shards = MessageShards(SHARDS)
    user = random.randrange(10**12, 10**13)
    table = shards.table_for(user)
    contents = [HARD_BYTES, b"second"]
    rows = [(user, i + 1, 0, 1, user, 1, user, f"{i % 2}", 1, contents[i % 2], 1, 10 + i) for i in range(6)]
    async with engine.begin() as conn:
        await db.insert_rows(conn, {table.insert(): rows}, COLUMNS, shared=slice(2, -1))
    async with engine.connect() as conn:
        query = sa.select(table.c.seq, table.c.to_user_ids, table.c.content, table.c.status)
        found = [
            (int(s), str(t), bytes(c), int(st))
            for s, t, c, st in await conn.execute(query.where(table.c.user_id == user).order_by(table.c.seq))
        ]
    assert found == [(i + 1, f"{i % 2}", contents[i % 2], 10 + i) for i in range(6)]
