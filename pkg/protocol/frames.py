"""Framing of the long connection, without I/O.

TCP carries a stream of frames: a 2-byte big-endian body length, then the body (one
packet). Reads may return several frames at once ("sticky" packets), part of one
("split" packets), or both. WebSocket carries one packet per binary message and needs no
framing of its own; the largest body is the same, FRAME_MAX bytes.

`FrameDecoder.feed` takes whatever bytes a read returned (many packets, part of one,
or both) and returns the complete bodies in order; a zero or oversize length raises
`FrameError` and the decoder stays broken (the connection must be closed).
"""

from __future__ import annotations

from gim.pkg.limits import FRAME_MAX

__all__ = ["FRAME_MAX", "FrameDecoder", "FrameError", "encode_frame"]
_HEADER = 2


class FrameError(Exception):
    """The stream cannot be a sequence of gim frames."""


def encode_frame(body: bytes) -> bytes:
    if not 0 < len(body) <= FRAME_MAX:
        raise FrameError(f"a frame body must be 1..{FRAME_MAX} bytes, got {len(body)}")
    return len(body).to_bytes(_HEADER, "big") + body


class FrameDecoder:
    __slots__ = ("max_body", "_buffer", "_broken")  # one per connection

    def __init__(self, max_body: int = FRAME_MAX) -> None:
        self.max_body = min(max_body, FRAME_MAX)
        # The start of a frame not complete yet; None while there is none (most of the time:
        # no idle buffer per connection, and whole frames are cut from the read's bytes).
        self._buffer: bytearray | None = None
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer) if self._buffer is not None else 0

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise FrameError("stream already failed")
        buffer = self._buffer
        if buffer is not None:
            buffer += data
        stream = data if buffer is None else buffer
        bodies: list[bytes] = []
        start = 0
        end = len(stream)
        while end - start >= _HEADER:
            length = (stream[start] << 8) | stream[start + 1]
            if length == 0 or length > self.max_body:
                self._broken = True
                self._buffer = None
                raise FrameError(
                    "zero-length frame" if length == 0 else f"frame of {length} bytes is larger than {self.max_body}"
                )
            if end - start - _HEADER < length:
                break
            bodies.append(bytes(stream[start + _HEADER : start + _HEADER + length]))
            start += _HEADER + length
        if start == end:
            self._buffer = None
        elif buffer is None:
            self._buffer = bytearray(data[start:])
        else:
            del buffer[:start]
        return bodies
