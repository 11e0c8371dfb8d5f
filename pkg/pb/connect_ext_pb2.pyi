from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PackageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PT_UNKNOWN: _ClassVar[PackageType]
    PT_SIGN_IN: _ClassVar[PackageType]
    PT_SYNC: _ClassVar[PackageType]
    PT_HEARTBEAT: _ClassVar[PackageType]
    PT_MESSAGE: _ClassVar[PackageType]
    PT_SUBSCRIBE_ROOM: _ClassVar[PackageType]

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MT_UNKNOWN: _ClassVar[MessageType]
    MT_TEXT: _ClassVar[MessageType]
    MT_FACE: _ClassVar[MessageType]
    MT_VOICE: _ClassVar[MessageType]
    MT_IMAGE: _ClassVar[MessageType]
    MT_FILE: _ClassVar[MessageType]
    MT_LOCATION: _ClassVar[MessageType]
    MT_COMMAND: _ClassVar[MessageType]
    MT_CUSTOM: _ClassVar[MessageType]

class ReceiverType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RT_UNKNOWN: _ClassVar[ReceiverType]
    RT_USER: _ClassVar[ReceiverType]
    RT_GROUP: _ClassVar[ReceiverType]
    RT_ROOM: _ClassVar[ReceiverType]

class SenderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ST_UNKNOWN: _ClassVar[SenderType]
    ST_SYSTEM: _ClassVar[SenderType]
    ST_USER: _ClassVar[SenderType]
    ST_BUSINESS: _ClassVar[SenderType]

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MS_UNKNOWN: _ClassVar[MessageStatus]
    MS_NORMAL: _ClassVar[MessageStatus]
    MS_RECALL: _ClassVar[MessageStatus]
PT_UNKNOWN: PackageType
PT_SIGN_IN: PackageType
PT_SYNC: PackageType
PT_HEARTBEAT: PackageType
PT_MESSAGE: PackageType
PT_SUBSCRIBE_ROOM: PackageType
MT_UNKNOWN: MessageType
MT_TEXT: MessageType
MT_FACE: MessageType
MT_VOICE: MessageType
MT_IMAGE: MessageType
MT_FILE: MessageType
MT_LOCATION: MessageType
MT_COMMAND: MessageType
MT_CUSTOM: MessageType
RT_UNKNOWN: ReceiverType
RT_USER: ReceiverType
RT_GROUP: ReceiverType
RT_ROOM: ReceiverType
ST_UNKNOWN: SenderType
ST_SYSTEM: SenderType
ST_USER: SenderType
ST_BUSINESS: SenderType
MS_UNKNOWN: MessageStatus
MS_NORMAL: MessageStatus
MS_RECALL: MessageStatus

class Message(_message.Message):
    __slots__ = ("sender", "receiver_type", "receiver_id", "to_user_ids", "message_type", "message_content", "seq", "send_time", "status")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    sender: Sender
    receiver_type: ReceiverType
    receiver_id: int
    to_user_ids: _containers.RepeatedScalarFieldContainer[int]
    message_type: MessageType
    message_content: bytes
    seq: int
    send_time: int
    status: MessageStatus
    def __init__(self, sender: _Optional[_Union[Sender, _Mapping]] = ..., receiver_type: _Optional[_Union[ReceiverType, str]] = ..., receiver_id: _Optional[int] = ..., to_user_ids: _Optional[_Iterable[int]] = ..., message_type: _Optional[_Union[MessageType, str]] = ..., message_content: _Optional[bytes] = ..., seq: _Optional[int] = ..., send_time: _Optional[int] = ..., status: _Optional[_Union[MessageStatus, str]] = ...) -> None: ...

class Sender(_message.Message):
    __slots__ = ("sender_type", "sender_id", "avatar_url", "nickname", "extra")
    SENDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    sender_type: SenderType
    sender_id: int
    avatar_url: str
    nickname: str
    extra: str
    def __init__(self, sender_type: _Optional[_Union[SenderType, str]] = ..., sender_id: _Optional[int] = ..., avatar_url: _Optional[str] = ..., nickname: _Optional[str] = ..., extra: _Optional[str] = ...) -> None: ...

class Text(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("face_id", "face_url")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_URL_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    face_url: str
    def __init__(self, face_id: _Optional[int] = ..., face_url: _Optional[str] = ...) -> None: ...

class Voice(_message.Message):
    __slots__ = ("id", "size", "duration", "url")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    size: int
    duration: int
    url: str
    def __init__(self, id: _Optional[str] = ..., size: _Optional[int] = ..., duration: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("id", "width", "height", "url", "thumbnail_url")
    ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    width: int
    height: int
    url: str
    thumbnail_url: str
    def __init__(self, id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., url: _Optional[str] = ..., thumbnail_url: _Optional[str] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("id", "name", "size", "url")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    size: int
    url: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., size: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("desc", "latitude", "longitude")
    DESC_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    desc: str
    latitude: float
    longitude: float
    def __init__(self, desc: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("code", "data")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    data: bytes
    def __init__(self, code: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Custom(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: str
    def __init__(self, data: _Optional[str] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("type", "request_id", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: PackageType
    request_id: int
    data: bytes
    def __init__(self, type: _Optional[_Union[PackageType, str]] = ..., request_id: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("type", "request_id", "code", "message", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: PackageType
    request_id: int
    code: int
    message: str
    data: bytes
    def __init__(self, type: _Optional[_Union[PackageType, str]] = ..., request_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class SignInInput(_message.Message):
    __slots__ = ("device_id", "user_id", "token")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    user_id: int
    token: str
    def __init__(self, device_id: _Optional[int] = ..., user_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class SyncInput(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class SyncOutput(_message.Message):
    __slots__ = ("messages", "has_more")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    has_more: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class SubscribeRoomInput(_message.Message):
    __slots__ = ("room_id", "seq")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    seq: int
    def __init__(self, room_id: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class MessageSend(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class MessageACK(_message.Message):
    __slots__ = ("device_ack", "receive_time")
    DEVICE_ACK_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    device_ack: int
    receive_time: int
    def __init__(self, device_ack: _Optional[int] = ..., receive_time: _Optional[int] = ...) -> None: ...
