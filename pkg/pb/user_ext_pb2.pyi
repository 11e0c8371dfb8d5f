from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignInReq(_message.Message):
    __slots__ = ("phone_number", "code", "device_id")
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    phone_number: str
    code: str
    device_id: int
    def __init__(self, phone_number: _Optional[str] = ..., code: _Optional[str] = ..., device_id: _Optional[int] = ...) -> None: ...

class SignInResp(_message.Message):
    __slots__ = ("is_new", "user_id", "token")
    IS_NEW_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    is_new: bool
    user_id: int
    token: str
    def __init__(self, is_new: _Optional[bool] = ..., user_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("user_id", "nickname", "sex", "avatar_url", "extra", "create_time", "update_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    nickname: str
    sex: int
    avatar_url: str
    extra: str
    create_time: int
    update_time: int
    def __init__(self, user_id: _Optional[int] = ..., nickname: _Optional[str] = ..., sex: _Optional[int] = ..., avatar_url: _Optional[str] = ..., extra: _Optional[str] = ..., create_time: _Optional[int] = ..., update_time: _Optional[int] = ...) -> None: ...

class GetUserReq(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class GetUserResp(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class UpdateUserReq(_message.Message):
    __slots__ = ("nickname", "sex", "avatar_url", "extra")
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    nickname: str
    sex: int
    avatar_url: str
    extra: str
    def __init__(self, nickname: _Optional[str] = ..., sex: _Optional[int] = ..., avatar_url: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class UpdateUserResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SearchUserReq(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class SearchUserResp(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...
