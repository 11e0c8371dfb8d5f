"""Groups: creation, profile, members and their roles, with the group events.

Permissions (the original had none): only admins update the group, change roles or
remove others; a member may remove itself; only members add members, read the member
list or send to the group. A refusal is 10011 with a message saying which rule.

Adding members is told with PC_ADD_GROUP_MEMBERS events that carry every new member's
profile: many members make several events, each small enough for one frame. They are
built (and the message store's queue asked for room) before the change commits, so a
group is never created, or members added, only to fail on its events.
"""

from __future__ import annotations

import dataclasses

from gim.internal.logic.events import ServerEvents
from gim.internal.logic.group_store import GroupStore
from gim.internal.logic.ports import Profiles
from gim.internal.logic.values import GroupInfo, GroupProfile, Member, MemberType, MemberView, MessageRow, ReceiverType
from gim.pkg import log
from gim.pkg.errors import Code, GimError, admins_only, bad_request, check_id, check_length, not_in_group
from gim.pkg.schema import group as group_table
from gim.pkg.schema import group_user as member_table
from gim.pkg.schema import max_length

_log = log.get("groups")

NAME_MAX = max_length(group_table.c.name)
AVATAR_URL_MAX = max_length(group_table.c.avatar_url)
INTRODUCTION_MAX = max_length(group_table.c.introduction)
EXTRA_MAX = max_length(group_table.c.extra)
MEMBER_REMARKS_MAX = max_length(member_table.c.remarks)
MEMBER_EXTRA_MAX = max_length(member_table.c.extra)
_UNKNOWN_ID = 2**63 - 1  # a group id not known yet (the largest, so that the sizes hold)


def _checked(profile: GroupProfile) -> GroupProfile:
    profile = dataclasses.replace(profile, name=profile.name.strip())
    if not profile.name:
        raise bad_request("name is required")
    check_length("name", profile.name, NAME_MAX)
    check_length("avatar_url", profile.avatar_url, AVATAR_URL_MAX)
    check_length("introduction", profile.introduction, INTRODUCTION_MAX)
    check_length("extra", profile.extra, EXTRA_MAX)
    return profile


class GroupService:
    def __init__(self, store: GroupStore, profiles: Profiles, events: ServerEvents, max_members: int) -> None:
        self.store = store
        self._profiles = profiles
        self._events = events
        self.max_members = max_members

    # -- checks ----------------------------------------------------------------------

    async def _members(self, group_id: int) -> list[Member]:
        """The members of an existing group (10013 otherwise)."""
        check_id("group_id", group_id)
        return await self.store.existing_members(group_id)

    @staticmethod
    def _member(members: list[Member], user_id: int, group_id: int) -> Member:
        for member in members:
            if member.user_id == user_id:
                return member
        raise not_in_group(user_id, group_id)

    def _admin(self, members: list[Member], user_id: int, group_id: int, action: str) -> None:
        if self._member(members, user_id, group_id).member_type != MemberType.ADMIN:
            raise admins_only(group_id, action)

    async def _new_users(self, user_ids: list[int], exclude: int, current: set[int]) -> list[int]:
        """Distinct, existing users (10016 names the first that is not), within the group size."""
        ids = list(dict.fromkeys(i for i in user_ids if i != exclude))
        if len(current | set(ids)) > self.max_members:
            raise bad_request(f"a group has at most {self.max_members} members")
        for user_id in ids:
            check_id("user id", user_id)
        profiles = await self._profiles.get_many(ids)
        for user_id in ids:
            if user_id not in profiles:
                raise GimError(Code.USER_NOT_FOUND, f"user {user_id} not found")
        return ids

    async def _nickname(self, user_id: int) -> str:
        profile = (await self._profiles.get_many([user_id])).get(user_id)
        return profile.nickname if profile is not None else ""

    async def _added_events(self, opt_id: int, added: list[Member], group_id: int) -> list[MessageRow]:
        """The PC_ADD_GROUP_MEMBERS events telling that `added` joined, each checked to fit a frame."""
        contents = self._events.contents.add_group_members(
            opt_id, await self._nickname(opt_id), await self._views(added)
        )
        return [self._events.row(ReceiverType.GROUP, group_id, content) for content in contents]

    # -- use cases -------------------------------------------------------------------

    async def create(self, creator_id: int, profile: GroupProfile, member_ids: list[int]) -> int:
        profile = _checked(profile)
        member_ids = await self._new_users(member_ids, exclude=creator_id, current={creator_id})
        members = [Member(creator_id, MemberType.ADMIN)] + [Member(u, MemberType.MEMBER) for u in member_ids]
        events = await self._added_events(creator_id, members[1:], _UNKNOWN_ID) if member_ids else []
        self._events.admit(len(events) * len(members))
        group_id = await self.store.create(profile, members)
        _log.info("group_created", group_id=group_id, creator_id=creator_id, members=len(members), events=len(events))
        events = [dataclasses.replace(e, receiver_id=group_id) for e in events]
        await self._events.push_rows(events, [m.user_id for m in members])
        return group_id

    async def update(self, user_id: int, group_id: int, profile: GroupProfile) -> None:
        members = await self._members(group_id)
        self._admin(members, user_id, group_id, "update it")
        profile = _checked(profile)
        await self.store.update(group_id, profile)
        content = self._events.contents.update_group(user_id, await self._nickname(user_id), profile)
        await self._events.push(ReceiverType.GROUP, group_id, [m.user_id for m in members], content)

    async def get(self, group_id: int) -> GroupInfo:
        check_id("group_id", group_id)
        return await self.store.get(group_id)

    async def of_user(self, user_id: int) -> list[GroupInfo]:
        return await self.store.of_user(user_id)

    async def add_members(self, user_id: int, group_id: int, user_ids: list[int]) -> list[int]:
        """Add users (a member may add); returns those who already were members."""
        members = await self._members(group_id)
        self._member(members, user_id, group_id)
        current = {m.user_id for m in members}
        ids = await self._new_users(user_ids, exclude=0, current=current)
        new = [Member(u, MemberType.MEMBER) for u in ids if u not in current]
        events = await self._added_events(user_id, new, group_id) if new else []
        self._events.admit(len(events) * (len(current) + len(new)))
        # the size is checked again inside the transaction: concurrent adds cannot pass it
        existing = await self.store.add_members(group_id, [Member(u, MemberType.MEMBER) for u in ids], self.max_members)
        added = [u for u in ids if u not in existing]
        if set(added) != {m.user_id for m in new}:  # the members changed meanwhile: tell of those added
            events = await self._added_events(user_id, [Member(u, MemberType.MEMBER) for u in added], group_id)
        if added:
            await self._events.push_rows(events, sorted(current | set(added)))
        _log.info("group_members_added", group_id=group_id, opt_id=user_id, added=len(added), events=len(events))
        return existing

    async def update_member(self, user_id: int, group_id: int, change: Member) -> None:
        """An admin sets a member's role, remarks and extra."""
        members = await self._members(group_id)
        self._admin(members, user_id, group_id, "change its members")
        check_id("user_id", change.user_id)
        self._member(members, change.user_id, group_id)
        if change.member_type not in (MemberType.ADMIN, MemberType.MEMBER):
            raise bad_request(f"member_type must be GMT_ADMIN or GMT_MEMBER, got {change.member_type}")
        check_length("remarks", change.remarks, MEMBER_REMARKS_MAX)
        check_length("extra", change.extra, MEMBER_EXTRA_MAX)
        await self.store.update_member(group_id, change)

    async def delete_member(self, user_id: int, group_id: int, target_id: int) -> None:
        """Remove `target_id` (an admin, or the member itself); every member is told."""
        members = await self._members(group_id)
        check_id("user_id", target_id)
        if target_id != user_id:
            self._admin(members, user_id, group_id, "remove others")
        self._member(members, target_id, group_id)
        await self.store.delete_member(group_id, target_id)
        content = self._events.contents.remove_group_member(user_id, await self._nickname(user_id), target_id)
        await self._events.push(ReceiverType.GROUP, group_id, [m.user_id for m in members], content)
        _log.info("group_member_removed", group_id=group_id, opt_id=user_id, user_id=target_id)

    async def member_list(self, user_id: int, group_id: int) -> list[MemberView]:
        members = await self._members(group_id)
        self._member(members, user_id, group_id)
        return await self._views(members)

    async def _views(self, members: list[Member]) -> list[MemberView]:
        profiles = await self._profiles.get_many([m.user_id for m in members])
        return [MemberView(m, profiles.get(m.user_id)) for m in members]
