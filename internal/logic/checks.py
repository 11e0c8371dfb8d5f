"""Checks of what an author hands over, before anything is stored or pushed."""

from __future__ import annotations

from gim.internal.logic.values import MessageType
from gim.pkg.errors import bad_request

_KNOWN_TYPES = frozenset(MessageType) - {MessageType.UNKNOWN}


def validate_content(message_type: int, content: bytes, max_bytes: int) -> None:
    """10001 unless the message type is known and the content fits (one frame, pushed)."""
    if message_type not in _KNOWN_TYPES:
        raise bad_request(f"unknown message_type {message_type}")
    if not content:
        raise bad_request("message_content is empty")
    if len(content) > max_bytes:
        raise bad_request(f"message_content is larger than {max_bytes} bytes")
