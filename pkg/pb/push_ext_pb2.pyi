from . import logic_ext_pb2 as _logic_ext_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PC_ADD_DEFAULT: _ClassVar[PushCode]
    PC_ADD_FRIEND: _ClassVar[PushCode]
    PC_AGREE_ADD_FRIEND: _ClassVar[PushCode]
    PC_UPDATE_GROUP: _ClassVar[PushCode]
    PC_ADD_GROUP_MEMBERS: _ClassVar[PushCode]
    PC_REMOVE_GROUP_MEMBER: _ClassVar[PushCode]
PC_ADD_DEFAULT: PushCode
PC_ADD_FRIEND: PushCode
PC_AGREE_ADD_FRIEND: PushCode
PC_UPDATE_GROUP: PushCode
PC_ADD_GROUP_MEMBERS: PushCode
PC_REMOVE_GROUP_MEMBER: PushCode

class AddFriendPush(_message.Message):
    __slots__ = ("friend_id", "nickname", "avatar_url", "description")
    FRIEND_ID_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    friend_id: int
    nickname: str
    avatar_url: str
    description: str
    def __init__(self, friend_id: _Optional[int] = ..., nickname: _Optional[str] = ..., avatar_url: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class AgreeAddFriendPush(_message.Message):
    __slots__ = ("friend_id", "nickname", "avatar_url")
    FRIEND_ID_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    friend_id: int
    nickname: str
    avatar_url: str
    def __init__(self, friend_id: _Optional[int] = ..., nickname: _Optional[str] = ..., avatar_url: _Optional[str] = ...) -> None: ...

class UpdateGroupPush(_message.Message):
    __slots__ = ("opt_id", "opt_name", "name", "avatar_url", "introduction", "extra")
    OPT_ID_FIELD_NUMBER: _ClassVar[int]
    OPT_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    INTRODUCTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    opt_id: int
    opt_name: str
    name: str
    avatar_url: str
    introduction: str
    extra: str
    def __init__(self, opt_id: _Optional[int] = ..., opt_name: _Optional[str] = ..., name: _Optional[str] = ..., avatar_url: _Optional[str] = ..., introduction: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class AddGroupMembersPush(_message.Message):
    __slots__ = ("opt_id", "opt_name", "members")
    OPT_ID_FIELD_NUMBER: _ClassVar[int]
    OPT_NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    opt_id: int
    opt_name: str
    members: _containers.RepeatedCompositeFieldContainer[_logic_ext_pb2.GroupMember]
    def __init__(self, opt_id: _Optional[int] = ..., opt_name: _Optional[str] = ..., members: _Optional[_Iterable[_Union[_logic_ext_pb2.GroupMember, _Mapping]]] = ...) -> None: ...

class RemoveGroupMemberPush(_message.Message):
    __slots__ = ("opt_id", "opt_name", "deleted_user_id")
    OPT_ID_FIELD_NUMBER: _ClassVar[int]
    OPT_NAME_FIELD_NUMBER: _ClassVar[int]
    DELETED_USER_ID_FIELD_NUMBER: _ClassVar[int]
    opt_id: int
    opt_name: str
    deleted_user_id: int
    def __init__(self, opt_id: _Optional[int] = ..., opt_name: _Optional[str] = ..., deleted_user_id: _Optional[int] = ...) -> None: ...
