"""The load generator's side of the long-connection protocol, without I/O.

A `Framing` turns bytes read from a socket into packet bodies and packet bodies into
bytes to write: `TcpFraming` (the 2-byte length prefix, `gim.pkg.protocol.frames`)
and `WsFraming` (binary WebSocket frames, websockets' sans-I/O `ClientProtocol`).
`Downstream` turns a body into one event tuple; bodies seen a moment ago (a room
broadcast is the same bytes on every connection) are parsed once.

Bench messages carry `TAG` + tag (8 bytes) + send time (ns, 8 bytes) as their content,
so a receiver knows which send it is and how long it took, across processes.
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple, Protocol

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from gim.pkg.protocol.frames import FrameDecoder, encode_frame
from gim.pkg.pb import connect_ext_pb2 as cx

TAG = b"gimbench"
_STAMP = struct.Struct(">qq")


def content(tag: int) -> bytes:
    """A message body naming the send (`tag`) and when it left (wall clock, ns)."""
    return TAG + _STAMP.pack(tag, time.time_ns())


def read_content(data: bytes) -> tuple[int, int] | None:
    """(tag, send time ns) of a bench message, None for anything else."""
    if len(data) != len(TAG) + _STAMP.size or not data.startswith(TAG):
        return None
    tag, sent = _STAMP.unpack_from(data, len(TAG))
    return tag, sent


def input_body(package_type: int, request_id: int = 0, data: bytes = b"") -> bytes:
    return cx.Input(type=package_type, request_id=request_id, data=data).SerializeToString()  # type: ignore[arg-type]


SYNC_FROM_START = cx.SyncInput(seq=0).SerializeToString()


def sign_in_body(user_id: int, device_id: int, token: str) -> bytes:
    data = cx.SignInInput(user_id=user_id, device_id=device_id, token=token).SerializeToString()
    return input_body(cx.PT_SIGN_IN, 1, data)


class Reply(NamedTuple):
    """An answer to one of our packets."""

    type: int
    request_id: int
    code: int
    message: str
    data: bytes


class Pushed(NamedTuple):
    """A pushed message: its seq (user or room), and tag and send time when it is ours;
    `room`: a room message (a room seq, never acked)."""

    seq: int
    tag: int
    sent_ns: int
    room: bool = False


def pushed(message: cx.Message) -> Pushed:
    """The event of one message, pushed or in a sync answer."""
    tag, sent_ns = read_content(message.message_content) or (0, 0)
    return Pushed(message.seq, tag, sent_ns, message.receiver_type == cx.RT_ROOM)


def ack_body(seq: int, receive_time_ms: int) -> bytes:
    """The upstream PT_MESSAGE acknowledging every message up to `seq`, as the SDK sends it."""
    data = cx.MessageACK(device_ack=seq, receive_time=receive_time_ms).SerializeToString()
    return input_body(cx.PT_MESSAGE, 0, data)


Event = Reply | Pushed


class Downstream:
    """Output bodies -> events; identical bodies in a row (broadcasts) parsed once."""

    def __init__(self, cache_size: int = 64) -> None:
        self._cache: dict[bytes, Event] = {}
        self._cache_size = cache_size

    def parse(self, body: bytes) -> Event:
        event = self._cache.get(body)
        if event is not None:
            return event
        out = cx.Output.FromString(body)
        if out.type == cx.PT_MESSAGE and out.request_id == 0 and not out.code:
            event = pushed(cx.MessageSend.FromString(out.data).message)
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[body] = event
            return event
        return Reply(out.type, out.request_id, out.code, out.message, out.data)


class Framing(Protocol):
    def opening(self) -> bytes:
        """Bytes to write as soon as the socket is connected."""

    def feed(self, data: bytes) -> list[bytes]:
        """Bytes read -> complete packet bodies (raises on a broken stream)."""

    def frame(self, body: bytes) -> bytes:
        """One packet body -> bytes to write."""


class TcpFraming:
    def __init__(self) -> None:
        self._decoder = FrameDecoder()

    def opening(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> list[bytes]:
        return self._decoder.feed(data)

    def frame(self, body: bytes) -> bytes:
        return encode_frame(body)


class WsClosed(Exception):
    """The WebSocket handshake failed or the server closed the connection."""


class WsFraming:
    """A WebSocket client (binary frames, one packet per frame) on websockets' sans-I/O core."""

    def __init__(self, url: str) -> None:
        self._ws = ClientProtocol(parse_uri(url), max_size=1 << 20)
        self._pending = b""

    def opening(self) -> bytes:
        self._ws.send_request(self._ws.connect())
        return self._drain()

    def feed(self, data: bytes) -> list[bytes]:
        self._ws.receive_data(data)
        bodies = []
        for event in self._ws.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    raise WsClosed(f"handshake answered {event.status_code}")
            elif isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                bodies.append(bytes(event.data))
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                raise WsClosed("closed by the server")
        self._pending += self._drain()  # pongs, close answers
        return bodies

    def frame(self, body: bytes) -> bytes:
        self._ws.send_binary(body)
        pending, self._pending = self._pending, b""
        return pending + self._drain()

    def take_pending(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending

    def _drain(self) -> bytes:
        return b"".join(self._ws.data_to_send())
