"""The values logic's domain works with: plain dataclasses and enums, no protobuf.

The servicers (`edge/servicers.py`) turn requests into these and these into responses;
the numbers of the enums are the wire's (a test compares them with the .proto enums).
Message contents are opaque bytes here: only the edges know what is inside.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import NamedTuple


class SenderType(enum.IntEnum):
    SYSTEM = 1
    USER = 2
    BUSINESS = 3


class ReceiverType(enum.IntEnum):
    USER = 1
    GROUP = 2
    ROOM = 3


class MessageType(enum.IntEnum):
    UNKNOWN = 0
    TEXT = 1
    FACE = 2
    VOICE = 3
    IMAGE = 4
    FILE = 5
    LOCATION = 6
    COMMAND = 7
    CUSTOM = 8


class MemberType(enum.IntEnum):
    ADMIN = 1
    MEMBER = 2


MESSAGE_NORMAL = 1  # the status of every message gim stores (MessageStatus MS_NORMAL)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass(frozen=True)
class Author:
    """Who sends a message: a user (and the sending device, which is not pushed its own
    message), a business backend, or the system (server events)."""

    sender_type: int  # SenderType
    sender_id: int
    device_id: int = 0


SYSTEM = Author(SenderType.SYSTEM, 0)
BUSINESS = Author(SenderType.BUSINESS, 0)


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A message as its author hands it over (SendMessage, PushRoom)."""

    receiver_type: int  # ReceiverType
    receiver_id: int
    message_type: int  # MessageType
    content: bytes
    to_user_ids: tuple[int, ...] = ()
    send_time: int = 0  # milliseconds; 0: now
    is_persist: bool = True


@dataclasses.dataclass(frozen=True)
class MessageRow:
    """What is stored for one recipient, less its user_id and seq."""

    request_id: int
    sender_type: int
    sender_id: int
    receiver_type: int
    receiver_id: int
    to_user_ids: list[int]
    message_type: int
    content: bytes
    send_time: int
    status: int = MESSAGE_NORMAL


@dataclasses.dataclass(frozen=True)
class StoredMessage:
    user_id: int
    seq: int
    row: MessageRow


@dataclasses.dataclass(frozen=True)
class User:
    """A user's profile as the business service gives it (shown with their messages)."""

    user_id: int
    nickname: str = ""
    sex: int = 0
    avatar_url: str = ""
    extra: str = ""


@dataclasses.dataclass(frozen=True)
class Friend:
    """One of a user's agreed friends: the user's own remarks and extra, and the friend's profile."""

    user_id: int
    remarks: str
    extra: str
    profile: User | None  # None: the business service does not know the user (any more)


@dataclasses.dataclass(frozen=True)
class GroupProfile:
    """What a group's creator or admin sets (CreateGroup, UpdateGroup)."""

    name: str
    avatar_url: str = ""
    introduction: str = ""
    extra: str = ""


@dataclasses.dataclass(frozen=True)
class GroupInfo:
    group_id: int
    name: str
    avatar_url: str
    introduction: str
    user_num: int
    extra: str
    create_time: int
    update_time: int


class Member(NamedTuple):  # a tuple: a group send reads every member's
    user_id: int
    member_type: int  # MemberType
    remarks: str = ""
    extra: str = ""


@dataclasses.dataclass(frozen=True)
class MemberView:
    """A member as shown to clients: the membership and the user's profile."""

    member: Member
    profile: User | None


class OnlineDevice(NamedTuple):  # a tuple: a group send makes one per member's device
    device_id: int
    user_id: int
    conn_addr: str


class Connection(NamedTuple):
    """Where a device's connection is: its connect node and the connection's client_addr."""

    conn_addr: str
    client_addr: str


@dataclasses.dataclass(frozen=True)
class SyncPage:
    """One page of a device's sync: stored messages in seq order, the profiles of their
    user senders, and whether more follow."""

    messages: list[StoredMessage]
    profiles: dict[int, User]
    has_more: bool
