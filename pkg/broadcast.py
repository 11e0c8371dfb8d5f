"""Room and push-all broadcasts: logic publishes, every connect node subscribes.

Both go over Redis pub/sub. The payloads are serialized `PushRoomMsg` / `PushAllMsg`
(connect_int.proto); a connect node pushes the `message_send` in them, as a
`PT_MESSAGE` Output, to its connections in that room / to all its connections.
"""

from __future__ import annotations


def room_channel(prefix: str) -> str:
    return f"{prefix}broadcast:room"


def all_channel(prefix: str) -> str:
    return f"{prefix}broadcast:all"
