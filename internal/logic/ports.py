"""What logic's domain needs from its edges, as protocols: the domain modules take these
and never import an edge (nor protobuf); `server.py` hands them the edge objects.

- `Profiles`: the business service's user look-ups (edge/business_client.py).
- `MessageFormat`: messages as devices get them, and the frame bound (edge/message_encoding.py).
- `EventFormat`: the contents of server events (edge/event_encoding.py).
- `Delivery`: pushes through the connect nodes (edge/connect_client.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol

from gim.internal.logic.values import GroupProfile, MemberView, MessageRow, OnlineDevice, User

# A device, and the serialized MessageSend for it, or (an int) the seq of a message that
# device sent itself: connect then pushes nothing, but the device's push order moves on.
Target = tuple[OnlineDevice, bytes | int]


class Profiles(Protocol):
    async def get_many(self, user_ids: list[int]) -> dict[int, User]:
        """The users that exist among `user_ids`."""
        ...


class MessageFormat(Protocol):
    def check_fits(self, row: MessageRow) -> None:
        """10001 unless `row` reaches any device in one frame, pushed or synced, whoever sends it."""
        ...

    def message_sends(self, row: MessageRow, sender: User | None, seqs: Mapping[int, int]) -> dict[int, bytes]:
        """What each user of `seqs` is pushed: `row` under that user's seq."""
        ...

    def room_message(self, row: MessageRow, sender: User | None, seq: int) -> bytes:
        """`row` as a room's message of `seq` (kept, broadcast, replayed)."""
        ...

    def room_broadcast(self, room_id: int, message: bytes) -> bytes:
        """What a room's message is published as, for every connect node."""
        ...

    def all_broadcast(self, row: MessageRow) -> bytes:
        """What a push to everybody is published as."""
        ...

    def message_send(self, message: bytes) -> bytes:
        """What a device is pushed for a room's message (`room_message`)."""
        ...


class EventFormat(Protocol):
    """The content (a Command) of each server event."""

    def add_friend(self, applicant: int, profile: User | None, description: str) -> bytes: ...

    def agree_add_friend(self, friend_id: int, profile: User | None) -> bytes: ...

    def update_group(self, opt_id: int, opt_name: str, group: GroupProfile) -> bytes: ...

    def add_group_members(self, opt_id: int, opt_name: str, members: list[MemberView]) -> list[bytes]:
        """As few contents as possible, each small enough for its event to fit a frame."""
        ...

    def remove_group_member(self, opt_id: int, opt_name: str, removed: int) -> bytes: ...


class Delivery(Protocol):
    backlog: int  # deliveries queued and not yet answered

    async def start(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> asyncio.Future[int]:
        """Queue the pushes (in this order, behind those queued before); the future tells how many succeeded."""
        ...

    async def deliver(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> int:
        """Push and wait for the answers; how many succeeded."""
        ...

    async def forget(self, conn_addr: str) -> None:
        """A connect node gone for good."""
        ...
