"""Sequence allocation on the `seq` table: one row per owner (a user, a room).

One upsert raises each owner's seq by the number of seqs it needs and, inside the
caller's transaction, reads the new values back; the upsert locks each row until commit,
so concurrent allocators on any number of logic nodes queue instead of reading the same
value, and a rolled-back transaction gives its seqs back (no gap, no duplicate).
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gim.pkg import db, metrics
from gim.pkg.schema import seq as seq_table

# the driver sends the rows of one call as one multi-row upsert
_mysql_upsert = mysql.insert(seq_table)
_MYSQL_UPSERT = _mysql_upsert.on_duplicate_key_update(seq=seq_table.c.seq + _mysql_upsert.inserted.seq)


async def allocate(conn: AsyncConnection, object_type: int, counts: Mapping[int, int]) -> dict[int, int]:
    """Raise each owner's seq by its count; returns each owner's new highest seq."""
    with metrics.LOGIC_SEQ_SECONDS.time():
        return await _allocate(conn, object_type, counts)


async def _allocate(conn: AsyncConnection, object_type: int, counts: Mapping[int, int]) -> dict[int, int]:
    owners = sorted(counts)  # one lock order for everybody: no deadlock between allocators
    if conn.dialect.name == "mysql":
        sql = db.driver_sql(conn, _MYSQL_UPSERT, ("object_type", "object_id", "seq"))
        await conn.exec_driver_sql(sql, [(object_type, o, counts[o]) for o in owners])
        # the upsert holds these rows locked: a plain read sees this transaction's values
        # (a locking read would scan a small table whole and wait on other owners' rows)
        result = await conn.execute(
            sa.select(seq_table.c.object_id, seq_table.c.seq).where(
                seq_table.c.object_type == object_type, seq_table.c.object_id.in_(owners)
            )
        )
    else:
        values = [{"object_type": object_type, "object_id": o, "seq": counts[o]} for o in owners]
        upsert = sqlite.insert(seq_table).values(values)
        result = await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[seq_table.c.object_type, seq_table.c.object_id],
                set_={"seq": seq_table.c.seq + upsert.excluded.seq},
            ).returning(seq_table.c.object_id, seq_table.c.seq)
        )
    highest = {int(object_id): int(value) for object_id, value in result}
    assert len(highest) == len(owners), "every owner gets its seqs"
    return highest
