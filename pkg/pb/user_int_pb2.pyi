from . import user_ext_pb2 as _user_ext_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthReq(_message.Message):
    __slots__ = ("user_id", "device_id", "token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    device_id: int
    token: str
    def __init__(self, user_id: _Optional[int] = ..., device_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class AuthResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuthManyReq(_message.Message):
    __slots__ = ("auths",)
    AUTHS_FIELD_NUMBER: _ClassVar[int]
    auths: _containers.RepeatedCompositeFieldContainer[AuthReq]
    def __init__(self, auths: _Optional[_Iterable[_Union[AuthReq, _Mapping]]] = ...) -> None: ...

class AuthManyResp(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AuthResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AuthResult, _Mapping]]] = ...) -> None: ...

class AuthResult(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetUsersReq(_message.Message):
    __slots__ = ("user_ids",)
    class UserIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.ScalarMap[int, int]
    def __init__(self, user_ids: _Optional[_Mapping[int, int]] = ...) -> None: ...

class GetUsersResp(_message.Message):
    __slots__ = ("users",)
    class UsersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: _user_ext_pb2.User
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[_user_ext_pb2.User, _Mapping]] = ...) -> None: ...
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.MessageMap[int, _user_ext_pb2.User]
    def __init__(self, users: _Optional[_Mapping[int, _user_ext_pb2.User]] = ...) -> None: ...
