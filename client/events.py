"""What a `Client` yields: typed, decoded messages.

`Message` is one of the user's own messages (single chat, group chat, system and
business messages): its `seq` is the user's per-user sequence, gapless for persisted
messages, 0 for messages that were not persisted. `RoomMessage` comes from the room the
client is subscribed to; its `seq` is the room's own sequence.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Proto

from gim.client.notices import person, sentence
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import push_ext_pb2 as px

Content = cx.Text | cx.Face | cx.Voice | cx.Image | cx.File | cx.Location | cx.Command | cx.Custom

CONTENT_TYPES: dict[int, type[Proto]] = {
    cx.MT_TEXT: cx.Text,
    cx.MT_FACE: cx.Face,
    cx.MT_VOICE: cx.Voice,
    cx.MT_IMAGE: cx.Image,
    cx.MT_FILE: cx.File,
    cx.MT_LOCATION: cx.Location,
    cx.MT_COMMAND: cx.Command,
    cx.MT_CUSTOM: cx.Custom,
}

PUSH_TYPES: dict[int, type[Proto]] = {
    px.PC_ADD_FRIEND: px.AddFriendPush,
    px.PC_AGREE_ADD_FRIEND: px.AgreeAddFriendPush,
    px.PC_UPDATE_GROUP: px.UpdateGroupPush,
    px.PC_ADD_GROUP_MEMBERS: px.AddGroupMembersPush,
    px.PC_REMOVE_GROUP_MEMBER: px.RemoveGroupMemberPush,
}


def _parse(kind: type[Proto], data: bytes) -> Proto | None:
    proto = kind()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        return None
    return proto


def decode_content(message_type: int, data: bytes) -> Content | None:
    """The content as its protobuf message; None for unknown types or bytes that do not parse."""
    kind = CONTENT_TYPES.get(message_type)
    return None if kind is None else _parse(kind, data)  # type: ignore[return-value,unused-ignore]  # kind is one of Content's types


def text(value: str) -> bytes:
    """The `message_content` of an MT_TEXT message."""
    return bytes(cx.Text(text=value).SerializeToString())


@dataclasses.dataclass(frozen=True)
class Sender:
    type: int  # cx.SenderType: ST_SYSTEM, ST_USER, ST_BUSINESS
    id: int
    nickname: str = ""
    avatar_url: str = ""
    extra: str = ""

    @property
    def name(self) -> str:
        """The nickname, or a stand-in naming the kind of sender."""
        if self.nickname:
            return self.nickname
        names: dict[int, str] = {cx.ST_SYSTEM: "system", cx.ST_BUSINESS: "business"}
        return names.get(self.type, f"user {self.id}")


@dataclasses.dataclass(frozen=True)
class Event:
    seq: int
    sender: Sender
    receiver_type: int  # cx.ReceiverType
    receiver_id: int
    message_type: int  # cx.MessageType
    content: Content | None  # decoded; None when the type is unknown or the bytes do not parse
    raw: bytes  # message_content as sent
    send_time: int  # milliseconds since the epoch
    status: int = cx.MS_NORMAL
    to_user_ids: tuple[int, ...] = ()

    @classmethod
    def from_pb(cls, message: cx.Message) -> Event:
        sender = message.sender
        return cls(
            seq=message.seq,
            sender=Sender(sender.sender_type, sender.sender_id, sender.nickname, sender.avatar_url, sender.extra),
            receiver_type=message.receiver_type,
            receiver_id=message.receiver_id,
            message_type=message.message_type,
            content=decode_content(message.message_type, message.message_content),
            raw=message.message_content,
            send_time=message.send_time,
            status=message.status,
            to_user_ids=tuple(message.to_user_ids),
        )

    @property
    def text(self) -> str | None:
        return self.content.text if isinstance(self.content, cx.Text) else None

    @property
    def time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.send_time / 1000, tz=datetime.UTC)

    @property
    def push(self) -> Proto | None:
        """A server push (`Command` from the system with a `PushCode`), decoded."""
        if not isinstance(self.content, cx.Command) or self.sender.type != cx.ST_SYSTEM:
            return None
        kind = PUSH_TYPES.get(self.content.code)
        return None if kind is None else _parse(kind, self.content.data)


@dataclasses.dataclass(frozen=True)
class Message(Event):
    """One of the user's messages, in the user's seq order."""


@dataclasses.dataclass(frozen=True)
class RoomMessage(Event):
    """A message of the subscribed room; `seq` is the room's sequence."""

    @property
    def room_id(self) -> int:
        return self.receiver_id


def event_of(message: cx.Message) -> Message | RoomMessage:
    kind = RoomMessage if message.receiver_type == cx.RT_ROOM else Message
    return kind.from_pb(message)  # type: ignore[return-value]  # from_pb returns an instance of kind


def describe(event: Event, me: int = 0, my_name: str = "", names: Mapping[int, str] | None = None) -> str:
    """A one-line, human-readable rendering (what `gim client` prints).

    `me`, `my_name`: the reader's user id and nickname (their own messages carry no
    nickname when this device sent them); `names`: nicknames known for other users.
    Server notifications read as sentences (see `notices`)."""
    stamp = event.time.astimezone().strftime("%H:%M:%S")
    push = event.push
    if push is not None:
        group_id = event.receiver_id if event.receiver_type == cx.RT_GROUP else 0
        return f"[{stamp}] * {sentence(push, group_id, me, names)}"
    known = names or {}
    sender = event.sender
    if sender.type == cx.ST_USER:
        nickname = sender.nickname or (my_name if me and sender.id == me else "") or known.get(sender.id, "")
        who = person(sender.id, nickname)
    else:
        who = sender.name
    if event.receiver_type == cx.RT_GROUP:
        where = f" in group {event.receiver_id}"
    elif event.receiver_type == cx.RT_ROOM:
        where = f" in room {event.receiver_id}"
    elif me and sender.type == cx.ST_USER and sender.id == me:
        where = f" to {person(event.receiver_id, known.get(event.receiver_id, ''))}"
    else:
        where = ""
    return f"[{stamp}] {who}{where}: {_body(event)}"


def _body(event: Event) -> str:
    if event.text is not None:
        return event.text
    if event.content is not None:
        return f"[{cx.MessageType.Name(event.message_type)}] {event.content}".replace("\n", " ").strip()
    return f"[type {event.message_type}, {len(event.raw)} bytes]"
