"""Wire messages of logic: checking what a sender gives, building what a device gets."""

from __future__ import annotations

import time

from gim.internal.logic.message_store import StoredMessage
from gim.pkg.errors import bad_request
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import user_ext_pb2


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


def delivery_bytes(device_id: int, message_send: bytes) -> bytes:
    """One DeliverMessageReq as an element of DeliverMessagesReq.messages: elements of a
    repeated field concatenate, so a request is the join of its deliveries."""
    req = _DEVICE_ID_TAG + varint(device_id) + _MESSAGE_SEND_TAG + varint(len(message_send)) + message_send
    return _FIELD_1_BYTES + varint(len(req)) + req

