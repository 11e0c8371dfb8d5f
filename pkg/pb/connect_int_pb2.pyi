from . import connect_ext_pb2 as _connect_ext_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliverMessageReq(_message.Message):
    __slots__ = ("device_id", "message_send")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEND_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    message_send: _connect_ext_pb2.MessageSend
    def __init__(self, device_id: _Optional[int] = ..., message_send: _Optional[_Union[_connect_ext_pb2.MessageSend, _Mapping]] = ...) -> None: ...

class DeliverMessageResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

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
