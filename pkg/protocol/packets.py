"""Long-connection packets without I/O: the `Input` a client sends, the `Output` a server sends.

Both are protobuf envelopes (connect_ext.proto): `type` (a PackageType), `request_id`
(echoed in the answer), and `data`, the serialized message of that type; an `Output` also
carries `code` and `message` (0 and empty when all went well). The server side parses
`Input`s and builds `Output`s; a client (the SDK, bench, the tests) does the reverse.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import encode_frame

KNOWN_TYPES = frozenset(cx.PackageType.values()) - {cx.PT_UNKNOWN}

M = TypeVar("M", bound=Message)


class PacketError(Exception):
    """A body that is not a usable packet."""


def parse_input(body: bytes) -> cx.Input:
    return parse_data(cx.Input, body)


def parse_output(body: bytes) -> cx.Output:
    """A server's `Output`; an empty envelope (no type, request id or code) is no packet."""
    out = parse_data(cx.Output, body)
    if not out.type and not out.request_id and not out.code:
        raise PacketError(f"not an Output: {body[:16]!r}")
    return out


def parse_data(message_type: type[M], data: bytes) -> M:
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PacketError(f"not a valid {message_type.__name__}: {exc}") from None
    return message


def input_body(package_type: int, request_id: int = 0, data: bytes = b"") -> bytes:
    """One serialized `Input` (what a client sends)."""
    return cx.Input(type=package_type, request_id=request_id, data=data).SerializeToString()  # type: ignore[arg-type]  # PackageType is an int at runtime


def output(package_type: int, request_id: int = 0, code: int = 0, message: str = "", data: bytes = b"") -> bytes:
    """One serialized `Output` (what a server sends)."""
    return cx.Output(
        type=package_type,  # type: ignore[arg-type]  # PackageType is an int at runtime
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
