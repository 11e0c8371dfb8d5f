from . import connect_ext_pb2 as _connect_ext_pb2
from . import logic_ext_pb2 as _logic_ext_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnSignInReq(_message.Message):
    __slots__ = ("device_id", "user_id", "token", "conn_addr", "client_addr")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    user_id: int
    token: str
    conn_addr: str
    client_addr: str
    def __init__(self, device_id: _Optional[int] = ..., user_id: _Optional[int] = ..., token: _Optional[str] = ..., conn_addr: _Optional[str] = ..., client_addr: _Optional[str] = ...) -> None: ...

class ConnSignInResp(_message.Message):
    __slots__ = ("max_seq",)
    MAX_SEQ_FIELD_NUMBER: _ClassVar[int]
    max_seq: int
    def __init__(self, max_seq: _Optional[int] = ...) -> None: ...

class ConnSignInsReq(_message.Message):
    __slots__ = ("sign_ins",)
    SIGN_INS_FIELD_NUMBER: _ClassVar[int]
    sign_ins: _containers.RepeatedCompositeFieldContainer[ConnSignInReq]
    def __init__(self, sign_ins: _Optional[_Iterable[_Union[ConnSignInReq, _Mapping]]] = ...) -> None: ...

class ConnSignInsResp(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SignInResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SignInResult, _Mapping]]] = ...) -> None: ...

class SignInResult(_message.Message):
    __slots__ = ("code", "message", "max_seq")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    max_seq: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., max_seq: _Optional[int] = ...) -> None: ...

class SyncReq(_message.Message):
    __slots__ = ("user_id", "device_id", "seq", "exact", "pages")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    device_id: int
    seq: int
    exact: bool
    pages: int
    def __init__(self, user_id: _Optional[int] = ..., device_id: _Optional[int] = ..., seq: _Optional[int] = ..., exact: _Optional[bool] = ..., pages: _Optional[int] = ...) -> None: ...

class SyncResp(_message.Message):
    __slots__ = ("messages", "has_more", "pages", "page_last_seqs")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGE_LAST_SEQS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_connect_ext_pb2.Message]
    has_more: bool
    pages: _containers.RepeatedScalarFieldContainer[bytes]
    page_last_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, messages: _Optional[_Iterable[_Union[_connect_ext_pb2.Message, _Mapping]]] = ..., has_more: _Optional[bool] = ..., pages: _Optional[_Iterable[bytes]] = ..., page_last_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class MessageACKReq(_message.Message):
    __slots__ = ("user_id", "device_id", "device_ack", "receive_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ACK_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    device_id: int
    device_ack: int
    receive_time: int
    def __init__(self, user_id: _Optional[int] = ..., device_id: _Optional[int] = ..., device_ack: _Optional[int] = ..., receive_time: _Optional[int] = ...) -> None: ...

class MessageACKResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MessageACKsReq(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[MessageACKReq]
    def __init__(self, acks: _Optional[_Iterable[_Union[MessageACKReq, _Mapping]]] = ...) -> None: ...

class MessageACKsResp(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AckResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AckResult, _Mapping]]] = ...) -> None: ...

class AckResult(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class OfflineReq(_message.Message):
    __slots__ = ("user_id", "device_id", "client_addr")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    device_id: int
    client_addr: str
    def __init__(self, user_id: _Optional[int] = ..., device_id: _Optional[int] = ..., client_addr: _Optional[str] = ...) -> None: ...

class OfflineResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OfflinesReq(_message.Message):
    __slots__ = ("offlines",)
    OFFLINES_FIELD_NUMBER: _ClassVar[int]
    offlines: _containers.RepeatedCompositeFieldContainer[OfflineReq]
    def __init__(self, offlines: _Optional[_Iterable[_Union[OfflineReq, _Mapping]]] = ...) -> None: ...

class OfflinesResp(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AckResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AckResult, _Mapping]]] = ...) -> None: ...

class SubscribeRoomReq(_message.Message):
    __slots__ = ("user_id", "device_id", "room_id", "seq", "conn_addr")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    device_id: int
    room_id: int
    seq: int
    conn_addr: str
    def __init__(self, user_id: _Optional[int] = ..., device_id: _Optional[int] = ..., room_id: _Optional[int] = ..., seq: _Optional[int] = ..., conn_addr: _Optional[str] = ...) -> None: ...

class SubscribeRoomResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PushAllReq(_message.Message):
    __slots__ = ("message_type", "message_content", "send_time")
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    message_type: _connect_ext_pb2.MessageType
    message_content: bytes
    send_time: int
    def __init__(self, message_type: _Optional[_Union[_connect_ext_pb2.MessageType, str]] = ..., message_content: _Optional[bytes] = ..., send_time: _Optional[int] = ...) -> None: ...

class PushAllResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDeviceReq(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    def __init__(self, device_id: _Optional[int] = ...) -> None: ...

class GetDeviceResp(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "user_id", "type", "brand", "model", "system_version", "sdk_version", "status", "create_time", "update_time")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    user_id: int
    type: int
    brand: str
    model: str
    system_version: str
    sdk_version: str
    status: int
    create_time: int
    update_time: int
    def __init__(self, device_id: _Optional[int] = ..., user_id: _Optional[int] = ..., type: _Optional[int] = ..., brand: _Optional[str] = ..., model: _Optional[str] = ..., system_version: _Optional[str] = ..., sdk_version: _Optional[str] = ..., status: _Optional[int] = ..., create_time: _Optional[int] = ..., update_time: _Optional[int] = ...) -> None: ...

class ServerStopReq(_message.Message):
    __slots__ = ("conn_addr",)
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    conn_addr: str
    def __init__(self, conn_addr: _Optional[str] = ...) -> None: ...

class ServerStopResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClaimDeviceReq(_message.Message):
    __slots__ = ("device_id", "user_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    user_id: int
    def __init__(self, device_id: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class ClaimDeviceResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReleaseDeviceReq(_message.Message):
    __slots__ = ("device_id", "user_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    user_id: int
    def __init__(self, device_id: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class ReleaseDeviceResp(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class ListNodesReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("conn_addr", "alive", "answered", "connections", "signed_in", "rooms", "room_members", "online_devices")
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_IN_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    ROOM_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_DEVICES_FIELD_NUMBER: _ClassVar[int]
    conn_addr: str
    alive: bool
    answered: bool
    connections: int
    signed_in: int
    rooms: int
    room_members: int
    online_devices: int
    def __init__(self, conn_addr: _Optional[str] = ..., alive: _Optional[bool] = ..., answered: _Optional[bool] = ..., connections: _Optional[int] = ..., signed_in: _Optional[int] = ..., rooms: _Optional[int] = ..., room_members: _Optional[int] = ..., online_devices: _Optional[int] = ...) -> None: ...

class ListNodesResp(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class GetUserDevicesReq(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class UserDevice(_message.Message):
    __slots__ = ("device", "conn_addr")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    device: Device
    conn_addr: str
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., conn_addr: _Optional[str] = ...) -> None: ...

class GetUserDevicesResp(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[UserDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[UserDevice, _Mapping]]] = ...) -> None: ...

class KickDeviceReq(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    def __init__(self, device_id: _Optional[int] = ...) -> None: ...

class KickDeviceResp(_message.Message):
    __slots__ = ("closed", "conn_addr")
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CONN_ADDR_FIELD_NUMBER: _ClassVar[int]
    closed: bool
    conn_addr: str
    def __init__(self, closed: _Optional[bool] = ..., conn_addr: _Optional[str] = ...) -> None: ...
