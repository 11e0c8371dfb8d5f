"""The packets the load generator sends and the events it reads, without I/O.

The bytes on the wire go through `gim.pkg.protocol` (frames, packets, and
`client_framing` for TCP and WebSocket). `Downstream` turns a body into one event
tuple; bodies seen a moment ago (a room broadcast is the same bytes on every
connection) are parsed once.

Bench messages carry `TAG` + tag (8 bytes) + send time (ns, 8 bytes) as their content,
so a receiver knows which send it is and how long it took, across processes.
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.packets import input_body

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
