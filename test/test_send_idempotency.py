"""Idempotent sends across logic nodes, without a look-up per send.

A send with a `request_id` (every 2021 client sends one) is stored with a unique key on
the sender's copy, so the insert itself finds an earlier attempt: a send with no earlier
attempt reads nothing more than one without a request_id, and a retry through another
logic node returns the first seq and stores nothing more. Older message tables get the
key from `gim migrate`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from gim.client.api import GimApi
from gim.internal.logic.server import LogicServer
from gim.pkg import db
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.redis_client import free_port
from gim.pkg.schema import MessageShards


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


@pytest.fixture
async def second_logic(cluster: Any) -> AsyncIterator[GimApi]:
    """Another logic node on the same storage (as a second process would be), and an API
    client that reaches LogicExt through it only."""
    config = dataclasses.replace(
        cluster.logic.config, int_listen=f"127.0.0.1:{free_port()}", ext_listen=f"127.0.0.1:{free_port()}"
    )
    logic = LogicServer.from_config(config)
    await logic.start()
    api = GimApi(config.ext_listen, cluster.business.config.ext_listen)
    try:
        yield api
    finally:
        await api.close()
        await logic.stop(1.0)


async def test_a_retry_through_another_logic_node_returns_the_first_seq(  # type: ignore[no-untyped-def]
    cluster, second_logic, message_rows
) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    first = await api.send_message(alice, cx.RT_USER, bob.user_id, text("once"), request_id=1_700_000_000_000_000_001)
    rows = await message_rows()
    again = await second_logic.send_message(
        alice, cx.RT_USER, bob.user_id, text("once"), request_id=1_700_000_000_000_000_001
    )
    assert again == first and await message_rows() == rows

    # attempts of one group send racing through both nodes: one copy per member, one seq
    members = [creds for (creds,) in [await cluster.new_user() for _ in range(3)]]
    req = lx.CreateGroupReq(name="g", member_ids=[m.user_id for m in members])
    group_id = (await api.call(api.logic.CreateGroup, req, alice)).group_id
    rows = await message_rows()
    attempts = [
        node.send_message(alice, cx.RT_GROUP, group_id, text("hi all"), request_id=1_700_000_000_000_000_002)
        for node in (api, second_logic) * 3
    ]
    seqs = await asyncio.gather(*attempts)
    assert len(set(seqs)) == 1 and seqs[0] > first, seqs
    assert await message_rows() == rows + 4, "one copy for each of the 4 members"

    # the same request_id reused for another message is a new send, on either node
    other = await second_logic.send_message(
        alice, cx.RT_USER, bob.user_id, text("other"), request_id=1_700_000_000_000_000_001
    )
    assert other == seqs[0] + 1
    assert (
        await api.send_message(alice, cx.RT_USER, bob.user_id, text("other"), request_id=1_700_000_000_000_000_001)
        == other
    )


async def test_a_first_attempt_costs_no_look_up(cluster) -> None:  # type: ignore[no-untyped-def]
    """The statements a send runs are the same with a request_id and without one."""
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, text("warm"))  # caches filled
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # the store's tables (not cached look-ups, not the acks written behind meanwhile)
        # (an ack upsert ends "ON DUPLICATE KEY UPDATE seq = ...": not a statement on seq)
        if "device_ack" in statement:
            return
        if re.search(r"\b(INTO|FROM|UPDATE)\s+(seq|message_\d+)\b", statement, re.IGNORECASE):
            statements.append(re.sub(r"\s+", " ", statement).strip())

    sending = cluster.logic.messages
    await sending.fanout.wait_queued()  # the pushes after the answer: their look-ups are not the send's
    engine = sending.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, text("plain"))
        await sending.fanout.wait_queued()
        plain, statements[:] = list(statements), []
        await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, text("keyed"), request_id=7_000_000_001)
        await sending.fanout.wait_queued()
        keyed = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert keyed == plain, (plain, keyed)
    assert not any("FOR UPDATE" in s.upper() for s in keyed)
    assert not any(s.upper().startswith("SELECT") and "message_" in s for s in keyed)


async def test_migrate_adds_the_key_to_older_message_tables_on_sqlite(tmp_path: Path) -> None:
    await migrated_from_older_tables(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


async def test_migrate_adds_the_key_to_older_message_tables_on_mysql(empty_mysql: str) -> None:
    await migrated_from_older_tables(empty_mysql)


async def migrated_from_older_tables(url: str) -> None:
    engine = db.create_engine(url)
    shards = MessageShards(2)
    try:
        old = sa.MetaData()
        for table in shards.tables:  # as an older version made them: no sender_request_id, no key
            sa.Table(table.name, old, *[c._copy() for c in table.columns if c.name != "sender_request_id"])
        async with engine.begin() as conn:
            await conn.run_sync(old.create_all)
        for _ in range(2):  # idempotent
            await db.migrate(engine, shards)

        def shape(sync_conn: Any) -> list[tuple[bool, bool]]:
            insp = sa.inspect(sync_conn)
            return [
                (
                    "sender_request_id" in {c["name"] for c in insp.get_columns(t.name)},
                    any(i["unique"] and i["name"] == f"uk_{t.name}_sender_request" for i in insp.get_indexes(t.name)),
                )
                for t in shards.tables
            ]

        async with engine.connect() as conn:
            assert await conn.run_sync(shape) == [(True, True)] * 2
    finally:
        await engine.dispose()
