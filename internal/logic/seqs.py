"""The `seq` table: one row per sequence owner (a user, a room); all of its SQL is here.

One upsert raises each owner's seq by the number of seqs it needs and, inside the
caller's transaction, the new values are read back; the upsert locks each row until
commit, so concurrent allocators on any number of logic nodes queue instead of reading
the same value, and a rolled-back transaction gives its seqs back (no gap, no duplicate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gim.pkg import db, metrics
from gim.pkg.schema import seq as seq_table

_c = seq_table.c
_COLUMNS = ("object_type", "object_id", "seq")
# the driver sends the rows of one call as one multi-row upsert
_RAISE = db.upsert(seq_table, ("object_type", "object_id"), lambda proposed: {"seq": _c.seq + proposed.new.seq})


def _of(object_type: int, owners: list[int]) -> sa.Select[Any]:
    return sa.select(_c.object_id, _c.seq).where(_c.object_type == object_type, _c.object_id.in_(owners))


async def allocate(conn: AsyncConnection, object_type: int, counts: Mapping[int, int]) -> dict[int, int]:
    """Raise each owner's seq by its count; returns each owner's new highest seq."""
    with metrics.LOGIC_SEQ_SECONDS.time():
        return await _allocate(conn, object_type, counts)


_SELECT: dict[tuple[str, int], str] = {}  # (parameter mark, owners) -> SQL


def _select_sql(conn: AsyncConnection, owners: int) -> str:
    """`_of` for this many owners as driver SQL, written once per size: it runs on every
    send (the read-back) and every batch of sign-ins (`current`), and building and
    compiling a select each time showed in profiles."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = _SELECT.get((mark, owners))
    if sql is None:
        if len(_SELECT) > 4096:  # sizes are group and batch sizes: a bound, never reached in practice
            _SELECT.clear()
        sql = _SELECT[(mark, owners)] = (
            f"SELECT object_id, seq FROM {seq_table.name} WHERE object_type = {mark} "
            f"AND object_id IN ({', '.join([mark] * owners)})"
        )
    return sql


_RETURNING: dict[int, str] = {}  # owners -> the upsert with RETURNING (MariaDB)


def _returning_sql(conn: AsyncConnection, owners: int) -> str | None:
    """The upsert of this many owners as one statement answering the new seqs (MariaDB
    10.5+: INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING gives the updated values),
    written once per size; None where the server has no RETURNING (MySQL, SQLite)."""
    dialect = conn.dialect
    if not getattr(dialect, "is_mariadb", False) or (dialect.server_version_info or (0,)) < (10, 5):
        return None
    sql = _RETURNING.get(owners)
    if sql is None:
        one = db.driver_sql(conn, _RAISE.for_(conn), _COLUMNS)
        values = "VALUES (%s, %s, %s)"
        if values not in one:
            return None
        if len(_RETURNING) > 4096:  # sizes are group sizes: a bound, never reached in practice
            _RETURNING.clear()
        many = one.replace(values, "VALUES " + ", ".join(["(%s, %s, %s)"] * owners), 1)
        sql = _RETURNING[owners] = f"{many} RETURNING object_id, seq"
    return sql


async def _allocate(conn: AsyncConnection, object_type: int, counts: Mapping[int, int]) -> dict[int, int]:
    owners = sorted(counts)  # one lock order for everybody: no deadlock between allocators
    returning = _returning_sql(conn, len(owners))
    if returning is not None:  # one round trip
        params = tuple(v for o in owners for v in (object_type, o, counts[o]))
        result = await conn.exec_driver_sql(returning, params)
    else:
        sql = db.driver_sql(conn, _RAISE.for_(conn), _COLUMNS)
        await conn.exec_driver_sql(sql, [(object_type, o, counts[o]) for o in owners])
        # the upsert holds these rows locked: a plain read sees this transaction's values
        # (a locking read would scan a small table whole and wait on other owners' rows)
        result = await conn.exec_driver_sql(_select_sql(conn, len(owners)), (object_type, *owners))
    highest = {int(owner): int(value) for owner, value in cast("Iterable[tuple[int, int]]", result)}
    assert len(highest) == len(owners), "every owner gets its seqs"
    return highest


async def lock(conn: AsyncConnection, object_type: int, owners: list[int]) -> dict[int, int]:
    """The owners' current seqs (those that have a row), the rows locked until commit:
    concurrent transactions that lock one of them queue here."""
    query = db.locking(db.through_primary_key(_of(object_type, sorted(owners)), seq_table))  # these rows only
    return {int(owner): int(value) for owner, value in await conn.execute(query)}


async def current(engine: AsyncEngine, object_type: int, owners: list[int]) -> dict[int, int]:
    """Each owner's highest seq (committed), 0 for one that has none yet."""
    highest = dict.fromkeys(owners, 0)
    if not highest:
        return highest
    wanted = sorted(highest)
    async with db.reading(engine) as conn:
        rows = await conn.exec_driver_sql(_select_sql(conn, len(wanted)), (object_type, *wanted))
        for owner, value in cast("Iterable[tuple[int, int]]", rows):
            highest[int(owner)] = int(value)
    return highest
