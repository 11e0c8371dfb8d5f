"""The `friend` table; all of its SQL is here.

An application is the row (applicant, target, APPLIED). Agreeing turns it into AGREED
and adds the reverse row (target, applicant, AGREED): each side keeps its own remarks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gim.pkg import db
from gim.pkg.errors import Code, GimError, bad_request
from gim.pkg.schema import FRIEND_AGREED, FRIEND_APPLIED
from gim.pkg.schema import friend as friend_table

_c = friend_table.c
_UPSERT = db.upsert(
    friend_table, ("user_id", "friend_id"), lambda p: {"remarks": p.new.remarks, "status": p.new.status}
)


@dataclasses.dataclass(frozen=True)
class FriendRow:
    friend_id: int
    remarks: str
    extra: str
    status: int


def _row(r: Sequence[Any]) -> FriendRow:
    return FriendRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]))


_COLUMNS = (_c.friend_id, _c.remarks, _c.extra, _c.status)


class FriendStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _get(self, conn: AsyncConnection, user_id: int, friend_id: int) -> FriendRow | None:
        row = (await conn.execute(sa.select(*_COLUMNS).where(_c.user_id == user_id, _c.friend_id == friend_id))).first()
        return None if row is None else _row(row)

    async def _put(self, conn: AsyncConnection, user_id: int, friend_id: int, remarks: str, status: int) -> None:
        values = {"user_id": user_id, "friend_id": friend_id, "remarks": remarks, "status": status}
        await conn.execute(_UPSERT.for_(conn).values(values))

    async def apply(self, user_id: int, friend_id: int, remarks: str) -> None:
        """`user_id` applies to be `friend_id`'s friend (again: the remarks are replaced);
        10015 if they already are friends."""
        async with self._engine.begin() as conn:
            existing = await self._get(conn, user_id, friend_id)
            if existing is not None and existing.status == FRIEND_AGREED:
                raise GimError(Code.ALREADY_FRIENDS, f"user {friend_id} is already your friend")
            await self._put(conn, user_id, friend_id, remarks, FRIEND_APPLIED)

    async def agree(self, user_id: int, applicant_id: int, remarks: str) -> None:
        """`user_id` accepts `applicant_id`'s application: both are friends, each with their
        own remarks. 10001 without an application, 10015 if they already are friends."""
        async with self._engine.begin() as conn:
            application = await self._get(conn, applicant_id, user_id)
            if application is None:
                raise bad_request(f"user {applicant_id} has not applied to be your friend")
            if application.status == FRIEND_AGREED:
                raise GimError(Code.ALREADY_FRIENDS, f"user {applicant_id} is already your friend")
            await self._put(conn, applicant_id, user_id, application.remarks, FRIEND_AGREED)
            await self._put(conn, user_id, applicant_id, remarks, FRIEND_AGREED)

    async def set(self, user_id: int, friend_id: int, remarks: str, extra: str) -> bool:
        """Set the user's remarks and extra of a friend; False if they are not friends."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                friend_table.update()
                .where(_c.user_id == user_id, _c.friend_id == friend_id, _c.status == FRIEND_AGREED)
                .values(remarks=remarks, extra=extra)
            )
        return bool(result.rowcount)

    async def agreed(self, user_id: int) -> list[FriendRow]:
        """The user's friends, in the order they became friends or applied."""
        query = sa.select(*_COLUMNS).where(_c.user_id == user_id, _c.status == FRIEND_AGREED).order_by(_c.id)
        async with db.reading(self._engine) as conn:
            return [_row(r) for r in await conn.execute(query)]
