"""Protobuf messages to domain values and back, for the servicers and the event contents."""

from __future__ import annotations

from gim.internal.logic.devices import Device
from gim.internal.logic.values import Friend, GroupInfo, GroupProfile, Member, MemberView, Outgoing, ReceiverType
from gim.pkg.pb import logic_ext_pb2 as ext
from gim.pkg.pb import logic_int_pb2 as int_


def outgoing(req: ext.SendMessageReq) -> Outgoing:
    return Outgoing(
        receiver_type=req.receiver_type,
        receiver_id=req.receiver_id,
        message_type=req.message_type,
        content=req.message_content,
        to_user_ids=tuple(req.to_user_ids),
        send_time=req.send_time,
        is_persist=req.is_persist,
    )


def room_outgoing(req: ext.PushRoomReq) -> Outgoing:
    return Outgoing(
        receiver_type=ReceiverType.ROOM,
        receiver_id=req.room_id,
        message_type=req.message_type,
        content=req.message_content,
        send_time=req.send_time,
        is_persist=req.is_persist,
    )


def group_profile(req: ext.CreateGroupReq | ext.UpdateGroupReq) -> GroupProfile:
    return GroupProfile(name=req.name, avatar_url=req.avatar_url, introduction=req.introduction, extra=req.extra)


def member(req: ext.UpdateGroupMemberReq) -> Member:
    return Member(req.user_id, req.member_type, req.remarks, req.extra)


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


def member_pb(view: MemberView) -> ext.GroupMember:
    m, profile = view.member, view.profile
    pb = ext.GroupMember(
        user_id=m.user_id,
        member_type=m.member_type,  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
        remarks=m.remarks,
        extra=m.extra,
    )
    if profile is not None:
        pb.nickname, pb.sex, pb.avatar_url, pb.user_extra = (
            profile.nickname,
            profile.sex,
            profile.avatar_url,
            profile.extra,
        )
    return pb


def friend_pb(friend: Friend) -> ext.Friend:
    pb = ext.Friend(user_id=friend.user_id, remarks=friend.remarks, extra=friend.extra)
    if friend.profile is not None:
        p = friend.profile
        pb.nickname, pb.sex, pb.avatar_url, pb.user_extra = p.nickname, p.sex, p.avatar_url, p.extra
    return pb


def device_pb(device: Device) -> int_.Device:
    return int_.Device(
        device_id=device.device_id,
        user_id=device.user_id,
        type=device.type,
        brand=device.brand,
        model=device.model,
        system_version=device.system_version,
        sdk_version=device.sdk_version,
        status=device.status,
        create_time=device.create_time,
        update_time=device.update_time,
    )
