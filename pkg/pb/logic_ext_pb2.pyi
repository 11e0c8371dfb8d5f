from . import connect_ext_pb2 as _connect_ext_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GMT_UNKNOWN: _ClassVar[MemberType]
    GMT_ADMIN: _ClassVar[MemberType]
    GMT_MEMBER: _ClassVar[MemberType]
GMT_UNKNOWN: MemberType
GMT_ADMIN: MemberType
GMT_MEMBER: MemberType

class RegisterDeviceReq(_message.Message):
    __slots__ = ("type", "brand", "model", "system_version", "sdk_version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    type: int
    brand: str
    model: str
    system_version: str
    sdk_version: str
    def __init__(self, type: _Optional[int] = ..., brand: _Optional[str] = ..., model: _Optional[str] = ..., system_version: _Optional[str] = ..., sdk_version: _Optional[str] = ...) -> None: ...

class RegisterDeviceResp(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    def __init__(self, device_id: _Optional[int] = ...) -> None: ...

class SendMessageReq(_message.Message):
    __slots__ = ("receiver_type", "receiver_id", "to_user_ids", "message_type", "message_content", "send_time", "is_persist")
    RECEIVER_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    IS_PERSIST_FIELD_NUMBER: _ClassVar[int]
    receiver_type: _connect_ext_pb2.ReceiverType
    receiver_id: int
    to_user_ids: _containers.RepeatedScalarFieldContainer[int]
    message_type: _connect_ext_pb2.MessageType
    message_content: bytes
    send_time: int
    is_persist: bool
    def __init__(self, receiver_type: _Optional[_Union[_connect_ext_pb2.ReceiverType, str]] = ..., receiver_id: _Optional[int] = ..., to_user_ids: _Optional[_Iterable[int]] = ..., message_type: _Optional[_Union[_connect_ext_pb2.MessageType, str]] = ..., message_content: _Optional[bytes] = ..., send_time: _Optional[int] = ..., is_persist: _Optional[bool] = ...) -> None: ...

class SendMessageResp(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class PushRoomReq(_message.Message):
    __slots__ = ("room_id", "message_type", "message_content", "send_time", "is_persist")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    IS_PERSIST_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    message_type: _connect_ext_pb2.MessageType
    message_content: bytes
    send_time: int
    is_persist: bool
    def __init__(self, room_id: _Optional[int] = ..., message_type: _Optional[_Union[_connect_ext_pb2.MessageType, str]] = ..., message_content: _Optional[bytes] = ..., send_time: _Optional[int] = ..., is_persist: _Optional[bool] = ...) -> None: ...

class PushRoomResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddFriendReq(_message.Message):
    __slots__ = ("friend_id", "remarks", "description")
    FRIEND_ID_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    friend_id: int
    remarks: str
    description: str
    def __init__(self, friend_id: _Optional[int] = ..., remarks: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class AddFriendResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgreeAddFriendReq(_message.Message):
    __slots__ = ("user_id", "remarks")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    remarks: str
    def __init__(self, user_id: _Optional[int] = ..., remarks: _Optional[str] = ...) -> None: ...

class AgreeAddFriendResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetFriendReq(_message.Message):
    __slots__ = ("friend_id", "remarks", "extra")
    FRIEND_ID_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    friend_id: int
    remarks: str
    extra: str
    def __init__(self, friend_id: _Optional[int] = ..., remarks: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class SetFriendResp(_message.Message):
    __slots__ = ("friend_id", "remarks", "extra")
    FRIEND_ID_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    friend_id: int
    remarks: str
    extra: str
    def __init__(self, friend_id: _Optional[int] = ..., remarks: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class Friend(_message.Message):
    __slots__ = ("user_id", "phone_number", "nickname", "sex", "avatar_url", "user_extra", "remarks", "extra")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    USER_EXTRA_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    phone_number: str
    nickname: str
    sex: int
    avatar_url: str
    user_extra: str
    remarks: str
    extra: str
    def __init__(self, user_id: _Optional[int] = ..., phone_number: _Optional[str] = ..., nickname: _Optional[str] = ..., sex: _Optional[int] = ..., avatar_url: _Optional[str] = ..., user_extra: _Optional[str] = ..., remarks: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class GetFriendsReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFriendsResp(_message.Message):
    __slots__ = ("friends",)
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    friends: _containers.RepeatedCompositeFieldContainer[Friend]
    def __init__(self, friends: _Optional[_Iterable[_Union[Friend, _Mapping]]] = ...) -> None: ...

class CreateGroupReq(_message.Message):
    __slots__ = ("name", "avatar_url", "introduction", "extra", "member_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    INTRODUCTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    avatar_url: str
    introduction: str
    extra: str
    member_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., avatar_url: _Optional[str] = ..., introduction: _Optional[str] = ..., extra: _Optional[str] = ..., member_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class CreateGroupResp(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class UpdateGroupReq(_message.Message):
    __slots__ = ("group_id", "avatar_url", "name", "introduction", "extra")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INTRODUCTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    avatar_url: str
    name: str
    introduction: str
    extra: str
    def __init__(self, group_id: _Optional[int] = ..., avatar_url: _Optional[str] = ..., name: _Optional[str] = ..., introduction: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class UpdateGroupResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGroupReq(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class GetGroupResp(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: Group
    def __init__(self, group: _Optional[_Union[Group, _Mapping]] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("group_id", "name", "avatar_url", "introduction", "user_mum", "extra", "create_time", "update_time")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    INTRODUCTION_FIELD_NUMBER: _ClassVar[int]
    USER_MUM_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    name: str
    avatar_url: str
    introduction: str
    user_mum: int
    extra: str
    create_time: int
    update_time: int
    def __init__(self, group_id: _Optional[int] = ..., name: _Optional[str] = ..., avatar_url: _Optional[str] = ..., introduction: _Optional[str] = ..., user_mum: _Optional[int] = ..., extra: _Optional[str] = ..., create_time: _Optional[int] = ..., update_time: _Optional[int] = ...) -> None: ...

class GetGroupsReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGroupsResp(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    def __init__(self, groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ...) -> None: ...

class AddGroupMembersReq(_message.Message):
    __slots__ = ("group_id", "user_ids")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, group_id: _Optional[int] = ..., user_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AddGroupMembersResp(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, user_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class UpdateGroupMemberReq(_message.Message):
    __slots__ = ("group_id", "user_id", "member_type", "remarks", "extra")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_TYPE_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    user_id: int
    member_type: MemberType
    remarks: str
    extra: str
    def __init__(self, group_id: _Optional[int] = ..., user_id: _Optional[int] = ..., member_type: _Optional[_Union[MemberType, str]] = ..., remarks: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class UpdateGroupMemberResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteGroupMemberReq(_message.Message):
    __slots__ = ("group_id", "user_id")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    user_id: int
    def __init__(self, group_id: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class DeleteGroupMemberResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGroupMembersReq(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class GetGroupMembersResp(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    def __init__(self, members: _Optional[_Iterable[_Union[GroupMember, _Mapping]]] = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = ("user_id", "nickname", "sex", "avatar_url", "user_extra", "member_type", "remarks", "extra")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    USER_EXTRA_FIELD_NUMBER: _ClassVar[int]
    MEMBER_TYPE_FIELD_NUMBER: _ClassVar[int]
    REMARKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    nickname: str
    sex: int
    avatar_url: str
    user_extra: str
    member_type: MemberType
    remarks: str
    extra: str
    def __init__(self, user_id: _Optional[int] = ..., nickname: _Optional[str] = ..., sex: _Optional[int] = ..., avatar_url: _Optional[str] = ..., user_extra: _Optional[str] = ..., member_type: _Optional[_Union[MemberType, str]] = ..., remarks: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...
