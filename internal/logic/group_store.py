"""The `group` and `group_user` tables, cached in Redis (group row, member rows); all of
their SQL is here."""

from __future__ import annotations

import dataclasses
import json

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gim.internal.logic.values import GroupInfo, GroupProfile, Member
from gim.pkg import db
from gim.pkg.cache import KIND_GROUP, KIND_MEMBERS, Cache, Decoded
from gim.pkg.db import epoch_seconds
from gim.pkg.errors import Code, GimError, bad_request
from gim.pkg.schema import group as group_table
from gim.pkg.schema import group_user as member_table

_INSERT_MEMBERS = db.insert_ignore(member_table)  # a user already in the group stays as they are


def _members(value: bytes) -> tuple[Member, ...]:
    return tuple(Member(*fields) for fields in json.loads(value))


def _group(m: sa.RowMapping) -> GroupInfo:
    return GroupInfo(
        group_id=int(m["id"]),
        name=str(m["name"]),
        avatar_url=str(m["avatar_url"]),
        introduction=str(m["introduction"]),
        user_num=int(m["user_num"]),
        extra=str(m["extra"]),
        create_time=epoch_seconds(m["create_time"]),
        update_time=epoch_seconds(m["update_time"]),
    )


class GroupStore:
    def __init__(self, engine: AsyncEngine, cache: Cache) -> None:
        self._engine = engine
        self._cache = cache
        self._decoded = Decoded(_members)

    # -- groups ----------------------------------------------------------------------

    async def create(self, profile: GroupProfile, members: list[Member]) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                group_table.insert().values(**dataclasses.asdict(profile), user_num=len(members))
            )
            group_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # an INSERT always has one
            await conn.execute(member_table.insert(), [_member_row(group_id, m) for m in members])
        # a look-up of this id before it existed may have cached "no such group"
        await self._cache.invalidate(KIND_GROUP, [group_id])
        await self._cache.invalidate(KIND_MEMBERS, [group_id])
        return group_id

    async def get(self, group_id: int) -> GroupInfo:
        """The group, or 10013."""
        cached = await self._cache.load(KIND_GROUP, [group_id], self._load_groups)
        if group_id not in cached:
            raise GimError(Code.GROUP_NOT_FOUND, f"group {group_id} not found")
        return GroupInfo(**json.loads(cached[group_id]))

    async def _load_groups(self, group_ids: list[int]) -> dict[int, bytes]:
        query = sa.select(group_table).where(group_table.c.id.in_(group_ids))
        async with db.reading(self._engine) as conn:
            groups = [_group(r._mapping) for r in await conn.execute(query)]
        return {g.group_id: json.dumps(dataclasses.asdict(g)).encode() for g in groups}

    async def update(self, group_id: int, profile: GroupProfile) -> None:
        async with self._engine.begin() as conn:
            update = group_table.update().where(group_table.c.id == group_id)
            result = await conn.execute(update.values(**dataclasses.asdict(profile)))
        if not result.rowcount:
            raise GimError(Code.GROUP_NOT_FOUND, f"group {group_id} not found")
        await self._cache.invalidate(KIND_GROUP, [group_id])

    async def of_user(self, user_id: int) -> list[GroupInfo]:
        query = (
            sa.select(group_table)
            .join(member_table, member_table.c.group_id == group_table.c.id)
            .where(member_table.c.user_id == user_id)
            .order_by(group_table.c.id)
        )
        async with db.reading(self._engine) as conn:
            return [_group(r._mapping) for r in await conn.execute(query)]

    # -- members ---------------------------------------------------------------------

    async def existing_members(self, group_id: int) -> list[Member]:
        """The members of a group that exists (10013 otherwise)."""
        await self.get(group_id)
        return await self.members(group_id)

    async def members(self, group_id: int) -> list[Member]:
        """The group's members in join order ([] for a group that does not exist)."""
        cached = await self._cache.load(KIND_MEMBERS, [group_id], self._load_members)
        return list(self._decoded(cached[group_id]))

    async def _load_members(self, group_ids: list[int]) -> dict[int, bytes]:
        columns = member_table.c
        query = (
            sa.select(columns.group_id, columns.user_id, columns.member_type, columns.remarks, columns.extra)
            .where(columns.group_id.in_(group_ids))
            .order_by(columns.id)
        )
        found: dict[int, list[list[object]]] = {g: [] for g in group_ids}
        async with db.reading(self._engine) as conn:
            for group_id, user_id, member_type, remarks, extra in await conn.execute(query):
                found[int(group_id)].append([int(user_id), int(member_type), str(remarks), str(extra)])
        return {g: json.dumps(rows).encode() for g, rows in found.items()}

    async def add_members(self, group_id: int, members: list[Member], max_members: int | None = None) -> list[int]:
        """Add those not in yet; returns the user ids that already were members.

        The group row is locked first (SELECT ... FOR UPDATE on MySQL; SQLite writers take
        the database lock at BEGIN IMMEDIATE), so concurrent adds to one group count its
        members one after the other: with `max_members`, an add that would go past it
        fails with 10001 and adds no one.
        """
        ids = [m.user_id for m in members]
        async with self._engine.begin() as conn:
            await self._lock_group(conn, group_id)
            existing = {
                int(u)
                for u in await conn.scalars(
                    sa.select(member_table.c.user_id).where(
                        member_table.c.group_id == group_id, member_table.c.user_id.in_(ids)
                    )
                )
            }
            new = [_member_row(group_id, m) for m in members if m.user_id not in existing]
            if new and max_members is not None:
                await self._check_size(conn, group_id, len(new), max_members)
            if new:
                await conn.execute(_INSERT_MEMBERS.for_(conn), new)
                await self._recount(conn, group_id)
        await self._cache.invalidate(KIND_MEMBERS, [group_id])
        await self._cache.invalidate(KIND_GROUP, [group_id])
        return [u for u in ids if u in existing]

    async def update_member(self, group_id: int, member: Member) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                member_table.update()
                .where(member_table.c.group_id == group_id, member_table.c.user_id == member.user_id)
                .values(member_type=member.member_type, remarks=member.remarks, extra=member.extra)
            )
        await self._cache.invalidate(KIND_MEMBERS, [group_id])
        return bool(result.rowcount)

    async def delete_member(self, group_id: int, user_id: int) -> bool:
        async with self._engine.begin() as conn:
            await self._lock_group(conn, group_id)
            result = await conn.execute(
                member_table.delete().where(member_table.c.group_id == group_id, member_table.c.user_id == user_id)
            )
            await self._recount(conn, group_id)
        await self._cache.invalidate(KIND_MEMBERS, [group_id])
        await self._cache.invalidate(KIND_GROUP, [group_id])
        return bool(result.rowcount)

    async def _lock_group(self, conn: AsyncConnection, group_id: int) -> None:
        """Serialize member changes of one group (10013 if there is no such group)."""
        query = db.locking(sa.select(group_table.c.id).where(group_table.c.id == group_id))
        if await conn.scalar(query) is None:
            raise GimError(Code.GROUP_NOT_FOUND, f"group {group_id} not found")

    async def _check_size(self, conn: AsyncConnection, group_id: int, adding: int, max_members: int) -> None:
        """10001 if the group (locked) has no room for `adding` more members."""
        query = sa.select(sa.func.count()).select_from(member_table).where(member_table.c.group_id == group_id)
        current = int(await conn.scalar(query) or 0)
        if current + adding > max_members:
            raise bad_request(f"a group has at most {max_members} members (it has {current}, {adding} more asked)")

    async def _recount(self, conn: AsyncConnection, group_id: int) -> None:
        count = (
            sa.select(sa.func.count())
            .select_from(member_table)
            .where(member_table.c.group_id == group_id)
            .scalar_subquery()
        )
        await conn.execute(group_table.update().where(group_table.c.id == group_id).values(user_num=count))


def _member_row(group_id: int, member: Member) -> dict[str, object]:
    return {
        "group_id": group_id,
        "user_id": member.user_id,
        "member_type": member.member_type,
        "remarks": member.remarks,
        "extra": member.extra,
    }
