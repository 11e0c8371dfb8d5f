"""Users in the database: created on first sign-in, read, updated, searched."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.pkg import db
from gim.pkg.db import epoch_seconds
from gim.pkg.errors import bad_request, check_length
from gim.pkg.schema import max_length
from gim.pkg.schema import user as user_table

NICKNAME_MAX = max_length(user_table.c.nickname)
AVATAR_URL_MAX = max_length(user_table.c.avatar_url)
EXTRA_MAX = max_length(user_table.c.extra)
PHONE_MAX = max_length(user_table.c.phone_number)


@dataclasses.dataclass(frozen=True)
class User:
    user_id: int
    phone_number: str
    nickname: str
    sex: int
    avatar_url: str
    extra: str
    create_time: int
    update_time: int


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(
        user_id=int(m["id"]),
        phone_number=str(m["phone_number"]),
        nickname=str(m["nickname"]),
        sex=int(m["sex"]),
        avatar_url=str(m["avatar_url"]),
        extra=str(m["extra"]),
        create_time=epoch_seconds(m["create_time"]),
        update_time=epoch_seconds(m["update_time"]),
    )


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_or_create(self, phone_number: str) -> tuple[User, bool]:
        """The user with this phone number, created if new; (user, is_new)."""
        found = await self.by_phone(phone_number)
        if found is not None:
            return found, False
        try:
            async with self._engine.begin() as conn:
                await conn.execute(user_table.insert().values(phone_number=phone_number, nickname=phone_number[-4:]))
        except IntegrityError:  # a concurrent first sign-in won the insert
            pass
        else:
            created = await self.by_phone(phone_number)
            assert created is not None
            return created, True
        found = await self.by_phone(phone_number)
        assert found is not None
        return found, False

    async def by_phone(self, phone_number: str) -> User | None:
        async with db.reading(self._engine) as conn:
            row = (await conn.execute(sa.select(user_table).where(user_table.c.phone_number == phone_number))).first()
        return _user(row) if row else None

    async def get(self, user_id: int) -> User | None:
        return (await self.get_many([user_id])).get(user_id)

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        async with db.reading(self._engine) as conn:
            rows = await conn.execute(sa.select(user_table).where(user_table.c.id.in_(ids)))
            return {u.user_id: u for u in map(_user, rows)}

    async def update(self, user_id: int, nickname: str, sex: int, avatar_url: str, extra: str) -> None:
        check_length("nickname", nickname, NICKNAME_MAX)
        check_length("avatar_url", avatar_url, AVATAR_URL_MAX)
        check_length("extra", extra, EXTRA_MAX)
        if sex not in (0, 1, 2):
            raise bad_request("sex must be 0 (unknown), 1 (male) or 2 (female)")
        async with self._engine.begin() as conn:
            await conn.execute(
                user_table.update()
                .where(user_table.c.id == user_id)
                .values(nickname=nickname, sex=sex, avatar_url=avatar_url, extra=extra)
            )

    async def search(self, key: str, limit: int) -> list[User]:
        """Users whose phone number is `key`, or whose nickname contains it."""
        key = key.strip()
        if not key:
            return []
        pattern = "%" + key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = (
            sa.select(user_table)
            .where(
                sa.or_(
                    user_table.c.phone_number == key,
                    user_table.c.nickname.like(pattern, escape="\\"),
                )
            )
            .order_by(user_table.c.id)
            .limit(limit)
        )
        async with db.reading(self._engine) as conn:
            return [_user(row) for row in await conn.execute(query)]
