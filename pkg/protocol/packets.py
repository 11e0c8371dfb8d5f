"""Long-connection packets without I/O: parse an `Input`, build an `Output`."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from gim.internal.connect.codec import encode_frame
from gim.pkg.pb import connect_ext_pb2 as cx

KNOWN_TYPES = frozenset(cx.PackageType.values()) - {cx.PT_UNKNOWN}


class PacketError(Exception):
    """A body that is not a usable packet."""


def parse_input(body: bytes) -> cx.Input:
    packet = cx.Input()
    try:
        packet.ParseFromString(body)
    except DecodeError as exc:
        raise PacketError(f"not a valid Input: {exc}") from None
    return packet


def parse_data(message_type: type, data: bytes) -> object:
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PacketError(f"not a valid {message_type.__name__}: {exc}") from None
    return message


def output(package_type: int, request_id: int = 0, code: int = 0, message: str = "", data: bytes = b"") -> bytes:
    return cx.Output(
        type=package_type,  # type: ignore[arg-type]
        request_id=request_id,
        code=code,
        message=message,
        data=data,
    ).SerializeToString()


class Encoded:
    """One serialized `Output`, framed for TCP at most once, to be written to many sockets.

    A room or push-all broadcast builds one `Encoded` and hands the same bytes to every
    connection: WebSocket sends `body`, TCP writes `frame` (length prefix + body).
    """

    __slots__ = ("body", "_frame")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = encode_frame(self.body)
        return self._frame
