"""The TCP frame codec and the packet helpers (docs/protocol.md section 1.1, framing)."""

from __future__ import annotations

import random

import pytest

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FRAME_MAX, FrameDecoder, FrameError, encode_frame
from gim.pkg.protocol.packets import (
    KNOWN_TYPES,
    PacketError,
    output,
    parse_data,
    parse_input,
)

MAX_BODY = 4096


def _bodies() -> list[bytes]:
    """Bodies of varied sizes, with bytes that look like length prefixes (0x00, 0xff)."""
    rng = random.Random(20240501)
    sizes = [1, 100, MAX_BODY, 2, 1, 255, 256, 257, MAX_BODY - 1, 3, 100, 1]
    bodies = [bytes(rng.randrange(256) for _ in range(size)) for size in sizes]
    bodies.append(b"\x00")
    bodies.append(b"\xff" * 10)
    bodies.append(b"\x00\x00\x00\x00")
    return bodies


BODIES = _bodies()
STREAM = b"".join(encode_frame(body) for body in BODIES)


def _feed_all(chunks: list[bytes]) -> tuple[list[bytes], FrameDecoder]:
    decoder = FrameDecoder(MAX_BODY)
    got: list[bytes] = []
    for chunk in chunks:
        got.extend(decoder.feed(chunk))
    return got, decoder


# --- sticky and split packets ---------------------------------------------------


def test_stream_split_into_two_reads_at_every_offset() -> None:
    for offset in range(len(STREAM) + 1):
        got, decoder = _feed_all([STREAM[:offset], STREAM[offset:]])
        assert got == BODIES, f"split at offset {offset}"
        assert decoder.buffered == 0, f"split at offset {offset}"


def test_stream_fed_one_byte_at_a_time() -> None:
    decoder = FrameDecoder(MAX_BODY)
    got: list[bytes] = []
    for i in range(len(STREAM)):
        got.extend(decoder.feed(STREAM[i : i + 1]))
    assert got == BODIES
    assert decoder.buffered == 0


def test_all_packets_in_one_read() -> None:
    decoder = FrameDecoder(MAX_BODY)
    assert decoder.feed(STREAM) == BODIES
    assert decoder.buffered == 0
    # The decoder keeps working for the next read.
    assert decoder.feed(encode_frame(b"next")) == [b"next"]


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 1234])
def test_random_split_into_many_chunks(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), 60))
    edges = [0, *cuts, len(STREAM)]
    chunks = [STREAM[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    assert b"".join(chunks) == STREAM
    got, decoder = _feed_all(chunks)
    assert got == BODIES
    assert decoder.buffered == 0


def test_empty_read_yields_nothing() -> None:
    decoder = FrameDecoder(MAX_BODY)
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x01x") == [b"x"]


# --- illegal lengths --------------------------------------------------------------


def test_zero_length_prefix_is_an_error() -> None:
    decoder = FrameDecoder(MAX_BODY)
    with pytest.raises(FrameError, match="zero"):
        decoder.feed(b"\x00\x00")


def test_zero_length_after_valid_packets_is_an_error() -> None:
    decoder = FrameDecoder(MAX_BODY)
    assert decoder.feed(encode_frame(b"ok")) == [b"ok"]
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(b"ab") + b"\x00\x00" + encode_frame(b"cd"))


def test_oversize_length_is_an_error_before_the_body_arrives() -> None:
    decoder = FrameDecoder(MAX_BODY)
    # Only the 2-byte header of a 4097-byte body: no body bytes at all.
    with pytest.raises(FrameError, match="4097"):
        decoder.feed((MAX_BODY + 1).to_bytes(2, "big"))


def test_oversize_length_split_header_is_an_error() -> None:
    decoder = FrameDecoder(MAX_BODY)
    header = (MAX_BODY + 1).to_bytes(2, "big")
    assert decoder.feed(header[:1]) == []
    with pytest.raises(FrameError):
        decoder.feed(header[1:])


def test_max_body_exactly_is_accepted() -> None:
    decoder = FrameDecoder(MAX_BODY)
    body = b"m" * MAX_BODY
    assert decoder.feed(encode_frame(body)) == [body]


def test_largest_length_rejected_by_default_limit() -> None:
    decoder = FrameDecoder(MAX_BODY)
    with pytest.raises(FrameError):
        decoder.feed(b"\xff\xff")


@pytest.mark.parametrize("bad", [b"\x00\x00", (MAX_BODY + 1).to_bytes(2, "big")])
def test_decoder_refuses_input_after_an_error(bad: bytes) -> None:
    decoder = FrameDecoder(MAX_BODY)
    with pytest.raises(FrameError):
        decoder.feed(bad)
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(b"valid"))
    with pytest.raises(FrameError):
        decoder.feed(b"")
    assert decoder.buffered == 0


# --- buffered ---------------------------------------------------------------------


def test_buffered_reports_bytes_of_a_partial_frame() -> None:
    decoder = FrameDecoder(MAX_BODY)
    assert decoder.buffered == 0
    frame = encode_frame(b"0123456789")
    assert decoder.feed(frame[:1]) == []
    assert decoder.buffered == 1
    assert decoder.feed(frame[1:7]) == []
    assert decoder.buffered == 7
    # The rest of the frame plus the start of another.
    assert decoder.feed(frame[7:] + b"\x00") == [b"0123456789"]
    assert decoder.buffered == 1
    assert decoder.feed(b"\x02ab") == [b"ab"]
    assert decoder.buffered == 0


# --- the protocol maximum ---------------------------------------------------------


def test_65535_byte_body_with_decoder_limit_65535() -> None:
    body = bytes(range(256)) * 255 + bytes(range(255))
    assert len(body) == 65_535
    frame = encode_frame(body)
    assert frame[:2] == b"\xff\xff"
    decoder = FrameDecoder(65_535)
    assert decoder.feed(frame[:30_000]) == []
    assert decoder.buffered == 30_000
    assert decoder.feed(frame[30_000:] + encode_frame(b"z")) == [body, b"z"]
    assert decoder.buffered == 0


def test_default_decoder_allows_the_protocol_maximum() -> None:
    assert FRAME_MAX == 65_535
    assert FrameDecoder().max_body == 65_535
    body = b"q" * 65_535
    assert FrameDecoder().feed(encode_frame(body)) == [body]


def test_encode_frame_prefix_is_big_endian_length() -> None:
    assert encode_frame(b"a") == b"\x00\x01a"
    assert encode_frame(b"x" * 0x0102) == b"\x01\x02" + b"x" * 0x0102


def test_encode_frame_rejects_empty_body() -> None:
    with pytest.raises(FrameError):
        encode_frame(b"")


def test_encode_frame_rejects_body_over_65535() -> None:
    with pytest.raises(FrameError):
        encode_frame(b"x" * 65_536)


# --- packets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff",  # a field header varint that never ends
        b"\x08",  # field 1 (varint) with no value
        b"\x10\xff",  # field 2 (varint) truncated mid-value
        b"\x1a\x05ab",  # field 3 (bytes) claims 5 bytes, has 2
        b"\x0f",  # wire type 7 does not exist
    ],
)
def test_parse_input_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(PacketError, match="Input"):
        parse_input(garbage)


def test_parse_input_round_trips_a_valid_input() -> None:
    sign_in = cx.SignInInput(device_id=7, user_id=42, token="tok")
    packet = cx.Input(type=cx.PT_SIGN_IN, request_id=123456789012, data=sign_in.SerializeToString())
    parsed = parse_input(packet.SerializeToString())
    assert parsed == packet
    assert parsed.type == cx.PT_SIGN_IN
    assert parsed.request_id == 123456789012
    data = parse_data(cx.SignInInput, parsed.data)
    assert isinstance(data, cx.SignInInput)
    assert (data.device_id, data.user_id, data.token) == (7, 42, "tok")


def test_parse_input_of_empty_body_is_a_default_input() -> None:
    # An empty protobuf message is valid; the framing layer forbids empty bodies.
    parsed = parse_input(b"")
    assert parsed.type == cx.PT_UNKNOWN
    assert parsed.request_id == 0


def test_parse_data_rejects_garbage_naming_the_type() -> None:
    with pytest.raises(PacketError, match="SyncInput"):
        parse_data(cx.SyncInput, b"\x08\xff")


def test_parse_data_round_trips() -> None:
    parsed = parse_data(cx.SubscribeRoomInput, cx.SubscribeRoomInput(room_id=9, seq=-3).SerializeToString())
    assert isinstance(parsed, cx.SubscribeRoomInput)
    assert (parsed.room_id, parsed.seq) == (9, -3)


def test_output_fields_parse_back() -> None:
    payload = cx.SyncOutput(has_more=True).SerializeToString()
    body = output(cx.PT_SYNC, request_id=-5, code=10010, message="bad thing", data=payload)
    parsed = cx.Output.FromString(body)
    assert parsed.type == cx.PT_SYNC
    assert parsed.request_id == -5
    assert parsed.code == 10010
    assert parsed.message == "bad thing"
    assert parsed.data == payload
    assert cx.SyncOutput.FromString(parsed.data).has_more is True


def test_output_defaults_and_framing() -> None:
    body = output(cx.PT_HEARTBEAT, request_id=77)
    parsed = cx.Output.FromString(body)
    assert (parsed.type, parsed.request_id, parsed.code, parsed.message, parsed.data) == (
        cx.PT_HEARTBEAT,
        77,
        0,
        "",
        b"",
    )
    # A heartbeat answer is non-empty, so it can be framed and decoded again.
    assert FrameDecoder(MAX_BODY).feed(encode_frame(body)) == [body]


def test_known_types_are_the_five_package_types() -> None:
    assert KNOWN_TYPES == {
        cx.PT_SIGN_IN,
        cx.PT_SYNC,
        cx.PT_HEARTBEAT,
        cx.PT_MESSAGE,
        cx.PT_SUBSCRIBE_ROOM,
    }
    assert cx.PT_UNKNOWN not in KNOWN_TYPES
