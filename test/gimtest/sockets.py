"""Seeing what connect's own transport does with its socket."""

from __future__ import annotations

import socket
from typing import Any


class CountedSends:
    """The transport's socket, counting its sends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def count_sends(transport: Any) -> CountedSends:
    """Count the sends of a `sockets.SocketTransport` from now on."""
    counted: CountedSends = CountedSends(transport._sock)
    transport._sock = counted
    return counted
