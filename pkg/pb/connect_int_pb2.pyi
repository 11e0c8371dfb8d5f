from . import connect_ext_pb2 as _connect_ext_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliverMessageReq(_message.Message):
    __slots__ = ("device_id", "message_send", "sent_seq", "user_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEND_FIELD_NUMBER: _ClassVar[int]
    SENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    message_send: _connect_ext_pb2.MessageSend
    sent_seq: int
    user_id: int
    def __init__(self, device_id: _Optional[int] = ..., message_send: _Optional[_Union[_connect_ext_pb2.MessageSend, _Mapping]] = ..., sent_seq: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class DeliverMessageResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeliverMessagesReq(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[DeliverMessageReq]
    def __init__(self, messages: _Optional[_Iterable[_Union[DeliverMessageReq, _Mapping]]] = ...) -> None: ...

class DeliverMessagesResp(_message.Message):
    __slots__ = ("absent_device_ids",)
    ABSENT_DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    absent_device_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, absent_device_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class CloseConnectionReq(_message.Message):
    __slots__ = ("device_id", "client_addr")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    client_addr: str
    def __init__(self, device_id: _Optional[int] = ..., client_addr: _Optional[str] = ...) -> None: ...

class CloseConnectionResp(_message.Message):
    __slots__ = ("closed",)
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    closed: bool
    def __init__(self, closed: _Optional[bool] = ...) -> None: ...

class GetStatsReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResp(_message.Message):
    __slots__ = ("connections", "signed_in", "rooms", "room_members")
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_IN_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    ROOM_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    connections: int
    signed_in: int
    rooms: int
    room_members: int
    def __init__(self, connections: _Optional[int] = ..., signed_in: _Optional[int] = ..., rooms: _Optional[int] = ..., room_members: _Optional[int] = ...) -> None: ...

class PushRoomMsg(_message.Message):
    __slots__ = ("room_id", "message_send")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEND_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    message_send: _connect_ext_pb2.MessageSend
    def __init__(self, room_id: _Optional[int] = ..., message_send: _Optional[_Union[_connect_ext_pb2.MessageSend, _Mapping]] = ...) -> None: ...

class PushAllMsg(_message.Message):
    __slots__ = ("message_send",)
    MESSAGE_SEND_FIELD_NUMBER: _ClassVar[int]
    message_send: _connect_ext_pb2.MessageSend
    def __init__(self, message_send: _Optional[_Union[_connect_ext_pb2.MessageSend, _Mapping]] = ...) -> None: ...
