"""What a device gets, as protobuf: messages pushed, synced and broadcast, and the
bounds that keep each one within a long-connection frame (an edge: the domain hands
`MessageRow`s and profiles to `ProtobufMessages`, the `MessageFormat` port)."""

from __future__ import annotations

from collections.abc import Mapping

from gim.internal.logic.values import MessageRow, StoredMessage, SyncPage, User
from gim.pkg import log
from gim.pkg.errors import bad_request
from gim.pkg.limits import FRAME_MAX
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2
from gim.pkg.schema import TO_USER_IDS_MAX, max_length
from gim.pkg.schema import user as user_table

_log = log.get("messages")


def sender_pb(sender_type: int, sender_id: int, profile: User | None) -> cx.Sender:
    """The sender, with a user's current nickname, avatar and extra (`profile`)."""
    sender = cx.Sender(sender_type=sender_type, sender_id=sender_id)  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
    if profile is not None and sender_type == cx.ST_USER:
        sender.nickname, sender.avatar_url, sender.extra = profile.nickname, profile.avatar_url, profile.extra
    return sender


def message_pb(stored: StoredMessage, sender: cx.Sender) -> cx.Message:
    row = stored.row
    return cx.Message(
        sender=sender,
        receiver_type=row.receiver_type,  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
        receiver_id=row.receiver_id,
        to_user_ids=row.to_user_ids,
        message_type=row.message_type,  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
        message_content=row.content,
        seq=stored.seq,
        send_time=row.send_time,
        status=row.status,  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
    )


# -- every message fits a frame -------------------------------------------------------
# A device gets a message pushed, Output{PT_MESSAGE, MessageSend{message}}, or in a sync
# answer, Output{PT_SYNC, request_id, SyncOutput{messages, has_more}}: one frame body of
# at most FRAME_MAX bytes either way. The Sender is filled in at push and sync time from
# the sender's profile of that moment, so a message is accepted only if it fits with the
# largest profile the user table holds (every character 4 bytes, as utf8mb4 allows).

SYNC_BUDGET = FRAME_MAX - 64  # a SyncOutput, at most: room for the Output around it (<= 19 bytes)
SYNC_AHEAD_BUDGET = 1 << 20  # bytes of pages in one read-ahead Sync answer, at most (gRPC takes 4 MiB)
MESSAGE_MAX = SYNC_BUDGET - 2 - 4  # one Message alone in a sync answer (has_more; its tag and length)
_SEQ_MAX = 2**63 - 1


def _longest(column: str) -> str:
    return "\U0001f600" * max_length(user_table.c[column])


LARGEST_SENDER = cx.Sender(
    sender_type=cx.ST_USER, sender_id=-1, nickname=_longest("nickname"), avatar_url=_longest("avatar_url"), extra=_longest("extra")
)  # fmt: skip


def worst_case_size(row: MessageRow) -> int:
    """Bytes of `row` as a Message, with the largest sender and seq a device can get."""
    return message_pb(StoredMessage(0, _SEQ_MAX, row), LARGEST_SENDER).ByteSize()


def check_fits(row: MessageRow) -> None:
    """10001 unless `row` reaches any device in one frame, pushed or synced. Every path
    that stores or pushes a message (sends, server events, rooms, push-all) calls this
    before anything commits."""
    size = worst_case_size(row)
    if size > MESSAGE_MAX:
        raise bad_request(
            f"message too large for one long-connection frame: {size} bytes with the largest sender "
            f"profile, at most {MESSAGE_MAX}; send less message_content or fewer to_user_ids"
        )
    if row.to_user_ids and len(",".join(map(str, row.to_user_ids))) > TO_USER_IDS_MAX:
        raise bad_request(f"to_user_ids too long: more than {TO_USER_IDS_MAX} characters as stored")


def field_size(length: int) -> int:
    """Bytes of a length-delimited field (tag below 16) holding `length` bytes."""
    return 1 + len(varint(length)) + length


def fit_for_sync(message: cx.Message) -> cx.Message:
    """`message` itself if it fits one sync answer alone; else a stand-in that does (same
    seq, sender and receiver ids, send time and status; type MT_UNKNOWN, no profile,
    content or to_user_ids), so that a sync moves past a stored message too large for a
    frame (stored before sizes were checked) instead of failing on it every time."""
    if message.ByteSize() <= MESSAGE_MAX:
        return message
    return cx.Message(
        sender=cx.Sender(sender_type=message.sender.sender_type, sender_id=message.sender.sender_id),
        receiver_type=message.receiver_type,
        receiver_id=message.receiver_id,
        message_type=cx.MT_UNKNOWN,
        seq=message.seq,
        send_time=message.send_time,
        status=message.status,
    )


# Protobuf wire bytes, written directly where one send fans out to many devices: the
# message is serialized once without its seq and each recipient's seq appended (a
# parser takes fields in any order), instead of building a Message per recipient.
_SEQ_TAG = b"\x38"  # Message.seq: field 7, varint
_FIELD_1_BYTES = b"\x0a"  # MessageSend.message, DeliverMessagesReq.messages: field 1, length-delimited
_DEVICE_ID_TAG = b"\x08"  # DeliverMessageReq.device_id: field 1, varint
_MESSAGE_SEND_TAG = b"\x12"  # DeliverMessageReq.message_send: field 2, length-delimited


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
    """`value` (0 <= value < 2**64) as a protobuf varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message_send_bytes(message_without_seq: bytes, seq: int) -> bytes:
    """A serialized MessageSend of the message with this recipient's seq."""
    message = message_without_seq + _SEQ_TAG + varint(seq) if seq else message_without_seq
    return _FIELD_1_BYTES + varint(len(message)) + message


def delivery_bytes(device_id: int, user_id: int, message_send: bytes) -> bytes:
    """One DeliverMessageReq as an element of DeliverMessagesReq.messages: elements of a
    repeated field concatenate, so a request is the join of its deliveries. `user_id` is
    the device's user: connect pushes only to a connection signed in as that user."""
    req = (
        _DEVICE_ID_TAG + varint(device_id) + _MESSAGE_SEND_TAG + varint(len(message_send)) + message_send
        + _USER_ID_TAG + varint(user_id)
    )  # fmt: skip
    return _FIELD_1_BYTES + varint(len(req)) + req


_ROOM_ID_TAG = b"\x08"  # PushRoomMsg.room_id: field 1, varint (its message_send is field 2, as DeliverMessageReq's)
_SENT_SEQ_TAG = b"\x18"  # DeliverMessageReq.sent_seq: field 3, varint
_USER_ID_TAG = b"\x20"  # DeliverMessageReq.user_id: field 4, varint


def sent_mark_bytes(device_id: int, user_id: int, seq: int) -> bytes:
    """A DeliverMessageReq (as `delivery_bytes`) that pushes nothing: the device sent the
    message of `seq` itself, and connect's push order for it moves past that seq."""
    req = _DEVICE_ID_TAG + varint(device_id) + _SENT_SEQ_TAG + varint(seq) + _USER_ID_TAG + varint(user_id)
    return _FIELD_1_BYTES + varint(len(req)) + req


# -- what the domain asks of this edge (the MessageFormat port) ----------------------


def sync_page(user_id: int, page: SyncPage) -> tuple[list[cx.Message], bool]:
    """A sync answer's messages and has_more: the page's messages as long as they fit one
    SyncOutput (SYNC_BUDGET; the rest come with the next sync), each with its sender's
    current profile."""
    messages = _fitted(user_id, page.messages, page.profiles)
    return messages, page.has_more or len(messages) < len(page.messages)


def sync_pages(user_id: int, chunk: SyncPage, page_size: int) -> tuple[list[bytes], list[int], bool]:
    """Several pages read at once (connect's read-ahead), cut as `sync_page` cuts one: each
    a serialized SyncOutput of at most `page_size` messages that fits a frame, the seq of
    each one's last message, and whether more follow the last page (what does not fit
    SYNC_AHEAD_BUDGET bytes is left for the next Sync)."""
    pages: list[bytes] = []
    last_seqs: list[int] = []
    stored, start, total = chunk.messages, 0, 0
    while start < len(stored) and total < SYNC_AHEAD_BUDGET:
        messages = _fitted(user_id, stored[start : start + page_size], chunk.profiles)
        start += len(messages)
        page = cx.SyncOutput(messages=messages, has_more=start < len(stored) or chunk.has_more).SerializeToString()
        pages.append(page)
        last_seqs.append(messages[-1].seq)
        total += len(page)
    if not pages:
        pages, last_seqs = [cx.SyncOutput(has_more=chunk.has_more).SerializeToString()], [0]
    return pages, last_seqs, start < len(stored) or chunk.has_more


def _fitted(user_id: int, stored: list[StoredMessage], profiles: Mapping[int, User]) -> list[cx.Message]:
    """The first of these messages that fit one SyncOutput together, each with its sender's
    current profile; one too large for a frame (stored before sizes were checked) as the
    stand-in of `fit_for_sync`."""
    messages: list[cx.Message] = []
    size = 2  # the has_more field
    for one in stored:
        row = one.row
        message = message_pb(one, sender_pb(row.sender_type, row.sender_id, profiles.get(row.sender_id)))
        if (fitted := fit_for_sync(message)) is not message:
            _log.warning("sync_message_too_large", user_id=user_id, seq=one.seq, size=message.ByteSize())
            message = fitted
        cost = message.ByteSize() + 4  # field tag + length prefix
        if messages and size + cost > SYNC_BUDGET:
            break
        messages.append(message)
        size += cost
    return messages


class ProtobufMessages:
    """The MessageFormat port (internal/logic/ports.py) in protobuf."""

    def check_fits(self, row: MessageRow) -> None:
        check_fits(row)

    def message_sends(self, row: MessageRow, sender: User | None, seqs: Mapping[int, int]) -> dict[int, bytes]:
        """A serialized MessageSend of `row` for each user of `seqs` (with that user's seq):
        the message is serialized once and each seq appended (a parser takes fields in
        any order)."""
        without_seq = message_pb(StoredMessage(0, 0, row), sender_pb(row.sender_type, row.sender_id, sender))
        serialized = without_seq.SerializeToString()
        return {user_id: message_send_bytes(serialized, seq) for user_id, seq in seqs.items()}

    def room_message(self, row: MessageRow, sender: User | None, seq: int) -> bytes:
        """A serialized Message of a room (kept in Redis, broadcast, replayed)."""
        return message_pb(
            StoredMessage(0, seq, row), sender_pb(row.sender_type, row.sender_id, sender)
        ).SerializeToString()

    def room_broadcast(self, room_id: int, message: bytes) -> bytes:
        """What goes on the room channel: a PushRoomMsg."""
        message_send = message_send_bytes(message, 0)
        return _ROOM_ID_TAG + varint(room_id) + _MESSAGE_SEND_TAG + varint(len(message_send)) + message_send

    def all_broadcast(self, row: MessageRow) -> bytes:
        """What goes on the push-all channel: a PushAllMsg (a Message without receiver or seq)."""
        message = cx.Message(
            sender=cx.Sender(sender_type=cx.ST_BUSINESS),
            message_type=row.message_type,  # type: ignore[arg-type]  # an int of the enum: the stubs ask for the enum type
            message_content=row.content,
            send_time=row.send_time,
            status=cx.MS_NORMAL,
        )
        return connect_int_pb2.PushAllMsg(message_send=cx.MessageSend(message=message)).SerializeToString()

    def message_send(self, message: bytes) -> bytes:
        """A serialized MessageSend of a serialized Message."""
        return message_send_bytes(message, 0)
