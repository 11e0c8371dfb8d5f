"""Friends: applications, agreement, remarks, the friend list (rows: friend_store.py)."""

from __future__ import annotations

from gim.internal.logic.events import ServerEvents
from gim.internal.logic.friend_store import FriendStore
from gim.internal.logic.ports import Profiles
from gim.internal.logic.values import Friend, ReceiverType
from gim.pkg import log
from gim.pkg.errors import Code, GimError, bad_request, check_id, check_length
from gim.pkg.schema import friend as friend_table
from gim.pkg.schema import max_length

_log = log.get("friends")

REMARKS_MAX = max_length(friend_table.c.remarks)
EXTRA_MAX = max_length(friend_table.c.extra)
DESCRIPTION_MAX = 255  # an application's description (pushed, not stored)


class FriendService:
    def __init__(self, store: FriendStore, profiles: Profiles, events: ServerEvents) -> None:
        self._store = store
        self._profiles = profiles
        self._events = events

    async def add(self, user_id: int, friend_id: int, remarks: str, description: str) -> None:
        """Apply to be `friend_id`'s friend; the target gets PC_ADD_FRIEND."""
        check_id("friend_id", friend_id)
        if friend_id == user_id:
            raise bad_request("cannot add yourself as a friend")
        check_length("remarks", remarks, REMARKS_MAX)
        check_length("description", description, DESCRIPTION_MAX)
        profiles = await self._profiles.get_many([user_id, friend_id])
        if friend_id not in profiles:
            raise GimError(Code.USER_NOT_FOUND, f"user {friend_id} not found")
        await self._store.apply(user_id, friend_id, remarks)
        content = self._events.contents.add_friend(user_id, profiles.get(user_id), description)
        await self._events.push(ReceiverType.USER, friend_id, [friend_id], content)
        _log.info("friend_applied", user_id=user_id, friend_id=friend_id)

    async def agree(self, user_id: int, applicant_id: int, remarks: str) -> None:
        """Accept `applicant_id`'s application: both become friends; the applicant gets PC_AGREE_ADD_FRIEND."""
        check_id("user_id", applicant_id)
        check_length("remarks", remarks, REMARKS_MAX)
        await self._store.agree(user_id, applicant_id, remarks)
        me = (await self._profiles.get_many([user_id])).get(user_id)
        content = self._events.contents.agree_add_friend(user_id, me)
        await self._events.push(ReceiverType.USER, applicant_id, [applicant_id], content)
        _log.info("friend_agreed", user_id=user_id, friend_id=applicant_id)

    async def set(self, user_id: int, friend_id: int, remarks: str, extra: str) -> None:
        check_id("friend_id", friend_id)
        check_length("remarks", remarks, REMARKS_MAX)
        check_length("extra", extra, EXTRA_MAX)
        if not await self._store.set(user_id, friend_id, remarks, extra):
            raise bad_request(f"user {friend_id} is not your friend")

    async def list(self, user_id: int) -> list[Friend]:
        """Agreed friends with their current profiles."""
        rows = await self._store.agreed(user_id)
        profiles = await self._profiles.get_many([r.friend_id for r in rows])
        return [Friend(r.friend_id, r.remarks, r.extra, profiles.get(r.friend_id)) for r in rows]
