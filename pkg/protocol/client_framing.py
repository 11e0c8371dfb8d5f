"""The client side of both transports over bytes, without I/O (for load generators).

A `Framing` turns bytes read from a socket into packet bodies and packet bodies into
bytes to write: `TcpFraming` (the 2-byte length prefix, frames.py) and `WsFraming`
(binary WebSocket messages, one packet each, on websockets' sans-I/O `ClientProtocol`).
"""

from __future__ import annotations

from typing import Protocol

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from gim.pkg.protocol.frames import FrameDecoder, encode_frame


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
        return self._outgoing()

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
        self._pending += self._outgoing()  # pongs, close answers
        return bodies

    def frame(self, body: bytes) -> bytes:
        self._ws.send_binary(body)
        pending, self._pending = self._pending, b""
        return pending + self._outgoing()

    def take_pending(self) -> bytes:
        """Bytes the protocol wants written (pongs, close answers) and nothing sent yet."""
        pending, self._pending = self._pending, b""
        return pending

    def _outgoing(self) -> bytes:
        return b"".join(self._ws.data_to_send())
