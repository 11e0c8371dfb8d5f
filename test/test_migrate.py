"""Schema creation: sql/create_table.sql runs on MySQL and matches what `gim migrate` builds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import inspect, text

from gim.pkg import db, schema
from gim.pkg.schema import MessageShards

SQL_FILE = Path(__file__).resolve().parent.parent / "sql" / "create_table.sql"


async def _columns(url: str) -> dict[str, list[tuple[str, str, bool]]]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:

            def read(sync_conn):  # type: ignore[no-untyped-def]
                insp = inspect(sync_conn)
                return {
                    t: [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)]
                    for t in sorted(insp.get_table_names())
                }

            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def test_create_table_sql_matches_migrate_on_mysql(empty_mysql: str) -> None:
    engine = db.create_engine(empty_mysql)
    try:
        async with engine.begin() as conn:
            for statement in SQL_FILE.read_text().split(";"):
                body = "\n".join(l for l in statement.splitlines() if not l.startswith("--")).strip()
                if body:
                    await conn.execute(text(body))
    finally:
        await engine.dispose()
    from_sql = await _columns(empty_mysql)

    await db.drop_database(empty_mysql)
    await db.ensure_database(empty_mysql)
    engine = db.create_engine(empty_mysql)
    try:
        await db.migrate(engine, MessageShards(10))
        await db.migrate(engine, MessageShards(10))  # idempotent
    finally:
        await engine.dispose()
    from_models = await _columns(empty_mysql)
    assert from_sql == from_models
    assert "message_009" in from_models and "group" in from_models


async def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Two processes share the SQLite file: writers take the lock up front, readers none."""
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}")
    other = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}")
    try:
        await db.migrate(engine, MessageShards(1))
        async with engine.begin() as writer:
            await writer.execute(schema.user.insert().values(phone_number="1"))
            # the write lock is held; a read on another connection still goes through
            async with asyncio.timeout(10), db.reading(other) as reader:
                count = await reader.scalar(sa.select(sa.func.count()).select_from(schema.user))
        assert count == 0, "the reader sees the last commit, not the open write"
    finally:
        await engine.dispose()
        await other.dispose()
