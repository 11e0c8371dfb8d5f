"""The contents of server events, as protobuf (an edge: the `EventFormat` port): a Command
{code, data} with the push message of push_ext.proto as its data."""

from __future__ import annotations

from google.protobuf.message import Message

from gim.internal.logic.edge.message_encoding import MESSAGE_MAX, field_size, worst_case_size
from gim.internal.logic.edge.pb_values import member_pb
from gim.internal.logic.values import GroupProfile, MemberView, MessageRow, MessageType, ReceiverType, SenderType, User
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import push_ext_pb2 as push

_SEQ_MAX = 2**63 - 1


def _command_data_max() -> int:
    """The largest Command.data of a server event that still fits (`check_fits`)."""
    empty = MessageRow(0, SenderType.SYSTEM, 0, ReceiverType.GROUP, _SEQ_MAX, [], MessageType.COMMAND, b"", _SEQ_MAX)
    content_field = 1 + 3  # message_content's tag and length (a length below 2**21)
    command_fields = (1 + 5) + (1 + 3)  # code (int32) and data's tag and length
    return MESSAGE_MAX - worst_case_size(empty) - content_field - command_fields


COMMAND_DATA_MAX = _command_data_max()


def command(code: int, data: Message) -> bytes:
    return cx.Command(code=code, data=data.SerializeToString()).SerializeToString()


def added_pushes(opt_id: int, opt_name: str, members: list[MemberView]) -> list[push.AddGroupMembersPush]:
    """AddGroupMembersPush events for `members`, in order, as few as possible with each
    one's data within COMMAND_DATA_MAX (so that its event fits one frame)."""
    pushes: list[push.AddGroupMembersPush] = []
    room = 0
    for member in map(member_pb, members):
        cost = field_size(member.ByteSize())
        if not pushes or cost > room:
            pushes.append(push.AddGroupMembersPush(opt_id=opt_id, opt_name=opt_name))
            room = COMMAND_DATA_MAX - pushes[-1].ByteSize()
        pushes[-1].members.append(member)
        room -= cost
    return pushes


class ProtobufEvents:
    """The EventFormat port (internal/logic/ports.py) in protobuf."""

    def add_friend(self, applicant: int, profile: User | None, description: str) -> bytes:
        data = push.AddFriendPush(
            friend_id=applicant,
            nickname=profile.nickname if profile else "",
            avatar_url=profile.avatar_url if profile else "",
            description=description,
        )
        return command(push.PC_ADD_FRIEND, data)

    def agree_add_friend(self, friend_id: int, profile: User | None) -> bytes:
        data = push.AgreeAddFriendPush(
            friend_id=friend_id,
            nickname=profile.nickname if profile else "",
            avatar_url=profile.avatar_url if profile else "",
        )
        return command(push.PC_AGREE_ADD_FRIEND, data)

    def update_group(self, opt_id: int, opt_name: str, group: GroupProfile) -> bytes:
        data = push.UpdateGroupPush(
            opt_id=opt_id,
            opt_name=opt_name,
            name=group.name,
            avatar_url=group.avatar_url,
            introduction=group.introduction,
            extra=group.extra,
        )
        return command(push.PC_UPDATE_GROUP, data)

    def add_group_members(self, opt_id: int, opt_name: str, members: list[MemberView]) -> list[bytes]:
        return [command(push.PC_ADD_GROUP_MEMBERS, data) for data in added_pushes(opt_id, opt_name, members)]

    def remove_group_member(self, opt_id: int, opt_name: str, removed: int) -> bytes:
        data = push.RemoveGroupMemberPush(opt_id=opt_id, opt_name=opt_name, deleted_user_id=removed)
        return command(push.PC_REMOVE_GROUP_MEMBER, data)
