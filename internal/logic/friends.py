"""Friends: applications, agreement, remarks, the friend list.

An application is the row (applicant, target, APPLIED). Agreeing turns it into AGREED
and adds the reverse row (target, applicant, AGREED): each side keeps its own remarks.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gim.internal.logic.messages import MessageService
from gim.internal.logic.users import UserClient
from gim.pkg import db, log
from gim.pkg.errors import Code, GimError, bad_request, check_id, check_length
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as ext
from gim.pkg.pb import push_ext_pb2 as push
from gim.pkg.schema import FRIEND_AGREED, FRIEND_APPLIED
from gim.pkg.schema import friend as friend_table

_log = log.get("friends")

REMARKS_MAX = 50
EXTRA_MAX = 1024
DESCRIPTION_MAX = 255


@dataclasses.dataclass(frozen=True)
class FriendRow:
    friend_id: int
    remarks: str
    extra: str
    status: int


class FriendService:
    def __init__(self, engine: AsyncEngine, users: UserClient, messages: MessageService) -> None:
        self._engine = engine
        self._users = users
        self._messages = messages
        self._mysql = engine.dialect.name == "mysql"

    async def _row(self, conn: AsyncConnection, user_id: int, friend_id: int) -> FriendRow | None:
        c = friend_table.c
        row = (
            await conn.execute(
                sa.select(c.friend_id, c.remarks, c.extra, c.status).where(
                    c.user_id == user_id, c.friend_id == friend_id
                )
            )
        ).first()
        return None if row is None else FriendRow(int(row[0]), str(row[1]), str(row[2]), int(row[3]))

    async def _upsert(self, conn: AsyncConnection, user_id: int, friend_id: int, remarks: str, status: int) -> None:
        values = {"user_id": user_id, "friend_id": friend_id, "remarks": remarks, "status": status}
        if self._mysql:
            insert = mysql.insert(friend_table).values(values)
            await conn.execute(insert.on_duplicate_key_update(remarks=remarks, status=status))
        else:
            insert = sqlite.insert(friend_table).values(values)
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[friend_table.c.user_id, friend_table.c.friend_id],
                    set_={"remarks": remarks, "status": status},
                )
            )

    async def add(self, user_id: int, friend_id: int, remarks: str, description: str) -> None:
        """Apply to be `friend_id`'s friend; the target gets PC_ADD_FRIEND."""
        check_id("friend_id", friend_id)
        if friend_id == user_id:
            raise bad_request("cannot add yourself as a friend")
        check_length("remarks", remarks, REMARKS_MAX)
        check_length("description", description, DESCRIPTION_MAX)
        users = await self._users.get_many([user_id, friend_id])
        if friend_id not in users:
            raise GimError(Code.USER_NOT_FOUND, f"user {friend_id} not found")
        async with self._engine.begin() as conn:
            existing = await self._row(conn, user_id, friend_id)
            if existing is not None and existing.status == FRIEND_AGREED:
                raise GimError(Code.ALREADY_FRIENDS, f"user {friend_id} is already your friend")
            await self._upsert(conn, user_id, friend_id, remarks, FRIEND_APPLIED)
        me = users.get(user_id)
        data = push.AddFriendPush(
            friend_id=user_id,
            nickname=me.nickname if me else "",
            avatar_url=me.avatar_url if me else "",
            description=description,
        )
        await self._messages.push_command(cx.RT_USER, friend_id, [friend_id], push.PC_ADD_FRIEND, data)
        _log.info("friend_applied", user_id=user_id, friend_id=friend_id)

    async def agree(self, user_id: int, applicant_id: int, remarks: str) -> None:
        """Accept `applicant_id`'s application: both become friends; the applicant gets PC_AGREE_ADD_FRIEND."""
        check_id("user_id", applicant_id)
        check_length("remarks", remarks, REMARKS_MAX)
        async with self._engine.begin() as conn:
            application = await self._row(conn, applicant_id, user_id)
            if application is None:
                raise bad_request(f"user {applicant_id} has not applied to be your friend")
            if application.status == FRIEND_AGREED:
                raise GimError(Code.ALREADY_FRIENDS, f"user {applicant_id} is already your friend")
            await self._upsert(conn, applicant_id, user_id, application.remarks, FRIEND_AGREED)
            await self._upsert(conn, user_id, applicant_id, remarks, FRIEND_AGREED)
        me = (await self._users.get_many([user_id])).get(user_id)
        data = push.AgreeAddFriendPush(
            friend_id=user_id, nickname=me.nickname if me else "", avatar_url=me.avatar_url if me else ""
        )
        await self._messages.push_command(cx.RT_USER, applicant_id, [applicant_id], push.PC_AGREE_ADD_FRIEND, data)
        _log.info("friend_agreed", user_id=user_id, friend_id=applicant_id)

    async def set(self, user_id: int, friend_id: int, remarks: str, extra: str) -> None:
        check_id("friend_id", friend_id)
        check_length("remarks", remarks, REMARKS_MAX)
        check_length("extra", extra, EXTRA_MAX)
        c = friend_table.c
        async with self._engine.begin() as conn:
            result = await conn.execute(
                friend_table.update()
                .where(c.user_id == user_id, c.friend_id == friend_id, c.status == FRIEND_AGREED)
                .values(remarks=remarks, extra=extra)
            )
        if not result.rowcount:
            raise bad_request(f"user {friend_id} is not your friend")

    async def list(self, user_id: int) -> list[ext.Friend]:
        """Agreed friends with their current user info."""
        c = friend_table.c
        query = sa.select(c.friend_id, c.remarks, c.extra, c.status).where(
            c.user_id == user_id, c.status == FRIEND_AGREED
        )
        async with db.reading(self._engine) as conn:
            rows = [
                FriendRow(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in await conn.execute(query.order_by(c.id))
            ]
        users = await self._users.get_many([r.friend_id for r in rows])
        friends = []
        for row in rows:
            friend = ext.Friend(user_id=row.friend_id, remarks=row.remarks, extra=row.extra)
            user = users.get(row.friend_id)
            if user is not None:
                friend.nickname, friend.sex, friend.avatar_url = user.nickname, user.sex, user.avatar_url
                friend.user_extra = user.extra
            friends.append(friend)
        return friends
