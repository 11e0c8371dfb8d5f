"""The MySQL pool's liveness check (pkg/db.py): a connection that lay unused is pinged
before it is handed out and replaced if the server dropped it; one just used is not."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.pkg import db


async def _connection_id_and_pings(engine: AsyncEngine) -> tuple[int, int]:
    """The server's id of the connection the pool hands out, and how many pings (admin
    commands) that connection has had."""
    async with engine.connect() as conn:
        connection_id = (await conn.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
        row = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Com_admin_commands'"))).one()
    return int(connection_id), int(row[1])


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    empty_mysql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)  # every checkout finds it idle
    engine = db.create_engine(empty_mysql, pool_size=1, max_overflow=0)
    other = db.create_engine(empty_mysql, pool_size=1, max_overflow=0)
    try:
        first, _ = await _connection_id_and_pings(engine)
        async with other.connect() as conn:
            await conn.execute(text(f"KILL CONNECTION {first}"))
        second, _ = await _connection_id_and_pings(engine)  # no error: replaced at checkout
        assert second != first
    finally:
        await engine.dispose()
        await other.dispose()


async def test_pings_only_after_idling(empty_mysql: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.create_engine(empty_mysql, pool_size=1, max_overflow=0)
    try:
        monkeypatch.setattr(db, "IDLE_BEFORE_PING", 3600.0)
        first, pings = await _connection_id_and_pings(engine)
        again, pings_again = await _connection_id_and_pings(engine)
        assert (again, pings_again) == (first, pings), "used a moment ago: handed out without a ping"

        monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)
        again, pings_after_idle = await _connection_id_and_pings(engine)
        assert again == first and pings_after_idle == pings + 1, "idle long enough: pinged once"
    finally:
        await engine.dispose()
