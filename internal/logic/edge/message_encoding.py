"""Wire messages of logic: checking what a sender gives, building what a device gets."""

from __future__ import annotations

import time

from gim.internal.logic.message_store import MessageRow, StoredMessage
from gim.pkg.errors import bad_request
from gim.pkg.limits import FRAME_MAX
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import user_ext_pb2
from gim.pkg.schema import user as user_table


def now_ms() -> int:
    return int(time.time() * 1000)


def validate_content(message_type: int, content: bytes, max_bytes: int) -> None:
    """10001 unless the message type is known and the content fits (one frame, pushed)."""
    if message_type not in cx.MessageType.values() or message_type == cx.MT_UNKNOWN:
        raise bad_request(f"unknown message_type {message_type}")
    if not content:
        raise bad_request("message_content is empty")
    if len(content) > max_bytes:
        raise bad_request(f"message_content is larger than {max_bytes} bytes")


def sender_pb(sender_type: int, sender_id: int, users: dict[int, user_ext_pb2.User]) -> cx.Sender:
    """The sender, with a user's current nickname, avatar and extra from `users`."""
    sender = cx.Sender(sender_type=sender_type, sender_id=sender_id)  # type: ignore[arg-type]
    user = users.get(sender_id) if sender_type == cx.ST_USER else None
    if user is not None:
        sender.nickname, sender.avatar_url, sender.extra = user.nickname, user.avatar_url, user.extra
    return sender


def message_pb(stored: StoredMessage, sender: cx.Sender) -> cx.Message:
    row = stored.row
    return cx.Message(
        sender=sender,
        receiver_type=row.receiver_type,  # type: ignore[arg-type]
        receiver_id=row.receiver_id,
        to_user_ids=row.to_user_ids,
        message_type=row.message_type,  # type: ignore[arg-type]
        message_content=row.content,
        seq=stored.seq,
        send_time=row.send_time,
        status=row.status,  # type: ignore[arg-type]
    )


# -- every message fits a frame -------------------------------------------------------
# A device gets a message pushed, Output{PT_MESSAGE, MessageSend{message}}, or in a sync
# answer, Output{PT_SYNC, request_id, SyncOutput{messages, has_more}}: one frame body of
# at most FRAME_MAX bytes either way. The Sender is filled in at push and sync time from
# the sender's profile of that moment, so a message is accepted only if it fits with the
# largest profile the user table holds (every character 4 bytes, as utf8mb4 allows).

SYNC_BUDGET = FRAME_MAX - 64  # a SyncOutput, at most: room for the Output around it (<= 19 bytes)
MESSAGE_MAX = SYNC_BUDGET - 2 - 4  # one Message alone in a sync answer (has_more; its tag and length)
TO_USER_IDS_MAX = 65_535  # the stored to_user_ids text (a MySQL TEXT column)
_SEQ_MAX = 2**63 - 1


def _longest(column: str) -> str:
    return "\U0001f600" * user_table.c[column].type.length  # type: ignore[attr-defined]


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


def _command_data_max() -> int:
    """The largest Command.data of a server event that still fits (`check_fits`)."""
    empty = MessageRow(0, cx.ST_SYSTEM, 0, cx.RT_GROUP, _SEQ_MAX, [], cx.MT_COMMAND, b"", _SEQ_MAX)
    content_field = 1 + 3  # message_content's tag and length (a length below 2**21)
    command_fields = (1 + 5) + (1 + 3)  # code (int32) and data's tag and length
    return MESSAGE_MAX - worst_case_size(empty) - content_field - command_fields


COMMAND_DATA_MAX = _command_data_max()


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


_SENT_SEQ_TAG = b"\x18"  # DeliverMessageReq.sent_seq: field 3, varint
_USER_ID_TAG = b"\x20"  # DeliverMessageReq.user_id: field 4, varint


def sent_mark_bytes(device_id: int, user_id: int, seq: int) -> bytes:
    """A DeliverMessageReq (as `delivery_bytes`) that pushes nothing: the device sent the
    message of `seq` itself, and connect's push order for it moves past that seq."""
    req = _DEVICE_ID_TAG + varint(device_id) + _SENT_SEQ_TAG + varint(seq) + _USER_ID_TAG + varint(user_id)
    return _FIELD_1_BYTES + varint(len(req)) + req
