"""The protobuf bytes logic writes by hand for fan-out parse as the messages they stand for."""

from __future__ import annotations

import pytest

from gim.internal.logic.edge.message_encoding import delivery_bytes, message_send_bytes, varint
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    # an int64 field holding `value` is the tag byte 0x08, then the varint (0 is not written)
    expected = ci.DeliverMessageReq(device_id=value).SerializeToString()[1:] if value else b"\x00"
    assert varint(value) == expected


@pytest.mark.parametrize("content_size", [0, 10, 200, 70_000])
@pytest.mark.parametrize("seq", [0, 1, 2**40])
def test_deliveries_parse_as_deliver_messages_req(seq: int, content_size: int) -> None:
    message = cx.Message(
        sender=cx.Sender(sender_type=cx.ST_USER, sender_id=5, nickname="Ann"), receiver_type=cx.RT_GROUP,
        receiver_id=9, to_user_ids=[1, 2], message_type=cx.MT_TEXT, message_content=b"x" * content_size,
        send_time=1_700_000_000_000, status=cx.MS_NORMAL,
    )  # fmt: skip
    without_seq = message.SerializeToString()
    devices = [1, 2**63 - 1, 300]
    users = [7, 2**63 - 1, 0]  # 0: an unowned target (connect then pushes to any session)
    data = b"".join(
        delivery_bytes(d, u, message_send_bytes(without_seq, seq + i))
        for i, (d, u) in enumerate(zip(devices, users, strict=False))
    )
    parsed = ci.DeliverMessagesReq.FromString(data).messages
    assert [m.device_id for m in parsed] == devices
    assert [m.user_id for m in parsed] == users
    for i, m in enumerate(parsed):
        expected = cx.Message()
        expected.CopyFrom(message)
        expected.seq = seq + i
        assert m.message_send.message == expected


def test_a_sent_mark_parses_as_a_delivery_without_a_message() -> None:
    from gim.internal.logic.edge.message_encoding import sent_mark_bytes

    data = sent_mark_bytes(300, 11, 2**40) + delivery_bytes(7, 12, message_send_bytes(b"", 5))
    first, second = ci.DeliverMessagesReq.FromString(data).messages
    assert (first.device_id, first.user_id, first.sent_seq, first.HasField("message_send")) == (300, 11, 2**40, False)
    assert (second.device_id, second.user_id, second.sent_seq, second.message_send.message.seq) == (7, 12, 0, 5)


def test_a_delivery_is_the_bytes_protobuf_writes() -> None:
    from gim.internal.logic.edge.message_encoding import sent_mark_bytes

    send = cx.MessageSend(message=cx.Message(seq=9, message_content=b"x")).SerializeToString()
    expected = ci.DeliverMessagesReq(
        messages=[ci.DeliverMessageReq(device_id=3, user_id=2**40, message_send=cx.MessageSend.FromString(send)),
                  ci.DeliverMessageReq(device_id=4, user_id=5, sent_seq=6)]
    )  # fmt: skip
    assert delivery_bytes(3, 2**40, send) + sent_mark_bytes(4, 5, 6) == expected.SerializeToString()
