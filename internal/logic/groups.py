"""Groups: creation, profile, members and their roles, with the group pushes.

Permissions (the original had none): only admins update the group, change roles or
remove others; a member may remove itself; only members add members, read the member
list or send to the group. A refusal is 10011 with a message saying which rule.

Adding members is told with PC_ADD_GROUP_MEMBERS events that carry every new member's
profile: many members make several events, each small enough for one frame. They are
built (and the message store's queue asked for room) before the change commits, so a
group is never created, or members added, only to fail on its events.
"""

from __future__ import annotations

import asyncio
import dataclasses

from google.protobuf.message import Message

from gim.internal.logic.group_store import GroupInfo, GroupStore, Member
from gim.internal.logic.message_store import MessageRow
from gim.internal.logic.messages import MessageService, command_row
from gim.internal.logic.users import UserClient
from gim.internal.logic.wire import COMMAND_DATA_MAX, field_size
from gim.pkg import log
from gim.pkg.errors import Code, GimError, bad_request, check_id, check_length
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as ext
from gim.pkg.pb import push_ext_pb2 as push

_log = log.get("groups")

NAME_MAX = 50
AVATAR_URL_MAX = 255
INTRODUCTION_MAX = 255
EXTRA_MAX = 1024
REMARKS_MAX = 50
_UNKNOWN_ID = 2**63 - 1  # a group id not known yet (the largest, so that the sizes hold)


def group_pb(group: GroupInfo) -> ext.Group:
    return ext.Group(
        group_id=group.group_id,
        name=group.name,
        avatar_url=group.avatar_url,
        introduction=group.introduction,
        user_mum=group.user_num,
        extra=group.extra,
        create_time=group.create_time,
        update_time=group.update_time,
    )


def _profile(name: str, avatar_url: str, introduction: str, extra: str) -> dict[str, str]:
    name = name.strip()
    if not name:
        raise bad_request("name is required")
    check_length("name", name, NAME_MAX)
    check_length("avatar_url", avatar_url, AVATAR_URL_MAX)
    check_length("introduction", introduction, INTRODUCTION_MAX)
    check_length("extra", extra, EXTRA_MAX)
    return {"name": name, "avatar_url": avatar_url, "introduction": introduction, "extra": extra}


class GroupService:
    def __init__(self, store: GroupStore, users: UserClient, messages: MessageService, max_members: int) -> None:
        self.store = store
        self._users = users
        self._messages = messages
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
        raise GimError(Code.NOT_IN_GROUP, f"user {user_id} is not in group {group_id}")

    def _admin(self, members: list[Member], user_id: int, group_id: int, action: str) -> None:
        if self._member(members, user_id, group_id).member_type != ext.GMT_ADMIN:
            raise GimError(Code.NOT_IN_GROUP, f"only an admin of group {group_id} may {action}")

    async def _new_users(self, user_ids: list[int], exclude: int, current: set[int]) -> list[int]:
        """Distinct, existing users (10016 names the first that is not), within the group size."""
        ids = list(dict.fromkeys(i for i in user_ids if i != exclude))
        if len(current | set(ids)) > self.max_members:
            raise bad_request(f"a group has at most {self.max_members} members")
        for user_id in ids:
            check_id("user id", user_id)
        users = await self._users.get_many(ids)
        for user_id in ids:
            if user_id not in users:
                raise GimError(Code.USER_NOT_FOUND, f"user {user_id} not found")
        return ids

    async def _nickname(self, user_id: int) -> str:
        user = (await self._users.get_many([user_id])).get(user_id)
        return user.nickname if user is not None else ""

    async def _push(self, group_id: int, user_ids: list[int], code: int, data: Message) -> None:
        await self._messages.push_command(cx.RT_GROUP, group_id, user_ids, code, data)

    async def _added_events(self, opt_id: int, added: list[Member], group_id: int) -> list[MessageRow]:
        """The PC_ADD_GROUP_MEMBERS events telling that `added` joined, each checked to fit a frame."""
        pushes = added_pushes(opt_id, await self._nickname(opt_id), await self._member_pbs(added))
        return [command_row(cx.RT_GROUP, group_id, push.PC_ADD_GROUP_MEMBERS, data) for data in pushes]

    def _admit(self, events: list[MessageRow], recipients: int) -> None:
        """`Overloaded` (RESOURCE_EXHAUSTED) before anything commits if the message store
        cannot queue the events now."""
        self._messages.store.admit(len(events) * recipients)

    async def _push_events(self, events: list[MessageRow], user_ids: list[int]) -> None:
        """Store and deliver the events of a committed change, in order, even if the caller
        leaves meanwhile (the change is done: its events must not be lost)."""

        async def push_all() -> None:
            for event in events:
                await self._messages.push_event(event, user_ids)

        await asyncio.shield(push_all())

    # -- use cases -------------------------------------------------------------------

    async def create(self, creator_id: int, req: ext.CreateGroupReq) -> int:
        fields = _profile(req.name, req.avatar_url, req.introduction, req.extra)
        member_ids = await self._new_users(list(req.member_ids), exclude=creator_id, current={creator_id})
        members = [Member(creator_id, ext.GMT_ADMIN)] + [Member(u, ext.GMT_MEMBER) for u in member_ids]
        events = await self._added_events(creator_id, members[1:], _UNKNOWN_ID) if member_ids else []
        self._admit(events, len(members))
        group_id = await self.store.create(fields, members)
        _log.info("group_created", group_id=group_id, creator_id=creator_id, members=len(members), events=len(events))
        events = [dataclasses.replace(e, receiver_id=group_id) for e in events]
        await self._push_events(events, [m.user_id for m in members])
        return group_id

    async def update(self, user_id: int, req: ext.UpdateGroupReq) -> None:
        members = await self._members(req.group_id)
        self._admin(members, user_id, req.group_id, "update it")
        fields = _profile(req.name, req.avatar_url, req.introduction, req.extra)
        await self.store.update(req.group_id, fields)
        data = push.UpdateGroupPush(opt_id=user_id, opt_name=await self._nickname(user_id), **fields)
        await self._push(req.group_id, [m.user_id for m in members], push.PC_UPDATE_GROUP, data)

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
        new = [Member(u, ext.GMT_MEMBER) for u in ids if u not in current]
        events = await self._added_events(user_id, new, group_id) if new else []
        self._admit(events, len(current) + len(new))
        # the size is checked again inside the transaction: concurrent adds cannot pass it
        existing = await self.store.add_members(group_id, [Member(u, ext.GMT_MEMBER) for u in ids], self.max_members)
        added = [u for u in ids if u not in existing]
        if set(added) != {m.user_id for m in new}:  # the members changed meanwhile: tell of those added
            events = await self._added_events(user_id, [Member(u, ext.GMT_MEMBER) for u in added], group_id)
        if added:
            await self._push_events(events, sorted(current | set(added)))
        _log.info("group_members_added", group_id=group_id, opt_id=user_id, added=len(added), events=len(events))
        return existing

    async def update_member(self, user_id: int, req: ext.UpdateGroupMemberReq) -> None:
        members = await self._members(req.group_id)
        self._admin(members, user_id, req.group_id, "change its members")
        check_id("user_id", req.user_id)
        self._member(members, req.user_id, req.group_id)
        if req.member_type not in (ext.GMT_ADMIN, ext.GMT_MEMBER):
            raise bad_request(f"member_type must be GMT_ADMIN or GMT_MEMBER, got {req.member_type}")
        check_length("remarks", req.remarks, REMARKS_MAX)
        check_length("extra", req.extra, EXTRA_MAX)
        await self.store.update_member(req.group_id, Member(req.user_id, req.member_type, req.remarks, req.extra))

    async def delete_member(self, user_id: int, group_id: int, target_id: int) -> None:
        """Remove `target_id` (an admin, or the member itself); every member is told."""
        members = await self._members(group_id)
        check_id("user_id", target_id)
        if target_id != user_id:
            self._admin(members, user_id, group_id, "remove others")
        self._member(members, target_id, group_id)
        await self.store.delete_member(group_id, target_id)
        data = push.RemoveGroupMemberPush(
            opt_id=user_id, opt_name=await self._nickname(user_id), deleted_user_id=target_id
        )
        await self._push(group_id, [m.user_id for m in members], push.PC_REMOVE_GROUP_MEMBER, data)
        _log.info("group_member_removed", group_id=group_id, opt_id=user_id, user_id=target_id)

    async def member_list(self, user_id: int, group_id: int) -> list[ext.GroupMember]:
        members = await self._members(group_id)
        self._member(members, user_id, group_id)
        return await self._member_pbs(members)

    async def _member_pbs(self, members: list[Member]) -> list[ext.GroupMember]:
        users = await self._users.get_many([m.user_id for m in members])
        result = []
        for member in members:
            pb = ext.GroupMember(
                user_id=member.user_id,
                member_type=member.member_type,  # type: ignore[arg-type]
                remarks=member.remarks,
                extra=member.extra,
            )
            user = users.get(member.user_id)
            if user is not None:
                pb.nickname, pb.sex, pb.avatar_url, pb.user_extra = user.nickname, user.sex, user.avatar_url, user.extra
            result.append(pb)
        return result


def added_pushes(opt_id: int, opt_name: str, members: list[ext.GroupMember]) -> list[push.AddGroupMembersPush]:
    """AddGroupMembersPush events for `members`, in order, as few as possible with each
    one's data within COMMAND_DATA_MAX (so that its event fits one frame)."""
    pushes: list[push.AddGroupMembersPush] = []
    room = 0
    for member in members:
        cost = field_size(member.ByteSize())
        if not pushes or cost > room:
            pushes.append(push.AddGroupMembersPush(opt_id=opt_id, opt_name=opt_name))
            room = COMMAND_DATA_MAX - pushes[-1].ByteSize()
        pushes[-1].members.append(member)
        room -= cost
    return pushes
