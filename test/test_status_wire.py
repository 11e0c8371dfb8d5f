"""The gim code as the gRPC status, read off the raw HTTP/2 wire (issue 13).

grpcio clients turn a status outside the standard set into UNKNOWN, so these tests speak
HTTP/2 themselves (the `h2` package over a socket) and read the `grpc-status` trailer as
sent. In the "gim" mode it must be the gim number itself (what a grpc-go client of the
original compares), in the "standard" mode the nearest standard code; the `gim-code`
trailer is there in both. Sending a non-standard status rests on undocumented grpc.aio
behaviour: a grpcio upgrade that changes it fails here.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from google.protobuf.message import Message

from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import user_ext_pb2 as ux

# the standard gRPC status numbers the "standard" mode sends
STANDARD = {
    Code.UNAUTHORIZED: 16,  # UNAUTHENTICATED
    Code.BAD_REQUEST: 3,  # INVALID_ARGUMENT
    Code.WRONG_CODE: 16,  # UNAUTHENTICATED
    Code.USER_NOT_FOUND: 5,  # NOT_FOUND
}


async def raw_call(port: int, path: str, request: Message, metadata: list[tuple[str, str]]) -> dict[str, str]:
    """One unary gRPC call over plain HTTP/2: the response's headers and trailers as sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *metadata,
    ]
    body = request.SerializeToString()
    conn.send_headers(stream, headers)
    conn.send_data(stream, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
    writer.write(conn.data_to_send())
    received: dict[str, str] = {}
    try:
        async with asyncio.timeout(10):
            while True:
                data = await reader.read(65536)
                assert data, f"connection closed before {path} ended: {received}"
                for event in conn.receive_data(data):
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        received.update((str(k), str(v)) for k, v in event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        return received
                writer.write(conn.data_to_send())
    finally:
        writer.close()


def identity(user_id: int, device_id: int, token: str) -> list[tuple[str, str]]:
    return [("user_id", str(user_id)), ("device_id", str(device_id)), ("token", token)]


def expected_status(mode: str, code: Code) -> str:
    return str(int(code) if mode == "gim" else STANDARD[code])


async def test_each_gim_error_is_the_status_on_the_wire(cluster: Any) -> None:
    (alice,) = await cluster.new_user()
    device_id = await cluster.api.register_device()
    text = cx.Text(text="x").SerializeToString()
    logic_ext, logic_int = cluster.logic.ext_port, cluster.logic.int_port
    user_ext, user_int = cluster.business.ext_port, cluster.business.int_port
    send = lx.SendMessageReq(receiver_type=cx.RT_USER, receiver_id=alice.user_id, message_type=cx.MT_TEXT, message_content=text)  # fmt: skip
    calls: list[tuple[Code, int, str, Message, list[tuple[str, str]]]] = [
        # a bad token, a bad request, a wrong code, a missing user: the public ports ...
        (
            Code.UNAUTHORIZED,
            logic_ext,
            "/pb.LogicExt/SendMessage",
            send,
            identity(alice.user_id, alice.device_id, "nope"),
        ),
        (
            Code.BAD_REQUEST,
            logic_ext,
            "/pb.LogicExt/SendMessage",
            lx.SendMessageReq(
                receiver_type=cx.RT_UNKNOWN, receiver_id=1, message_type=cx.MT_TEXT, message_content=text
            ),
            identity(alice.user_id, alice.device_id, alice.token),
        ),  # fmt: skip
        (
            Code.WRONG_CODE,
            user_ext,
            "/pb.UserExt/SignIn",
            ux.SignInReq(phone_number="1" + str(uuid.uuid4().int)[:10], code="9999", device_id=device_id),
            [],
        ),  # fmt: skip
        (
            Code.USER_NOT_FOUND,
            user_ext,
            "/pb.UserExt/GetUser",
            ux.GetUserReq(user_id=10**15),
            identity(alice.user_id, alice.device_id, alice.token),
        ),  # fmt: skip
        (
            Code.UNAUTHORIZED,
            user_ext,
            "/pb.BusinessExt/GetUser",
            ux.GetUserReq(user_id=alice.user_id),
            identity(alice.user_id, alice.device_id, "nope"),
        ),  # fmt: skip
        # ... and the private ones
        (Code.BAD_REQUEST, logic_int, "/pb.LogicInt/GetDevice", li.GetDeviceReq(device_id=0), []),
        (Code.USER_NOT_FOUND, user_int, "/pb.UserInt/GetUser", ux.GetUserReq(user_id=10**15), []),
    ]
    mode = cluster.storage.status_mode
    for code, port, path, request, metadata in calls:
        answer = await raw_call(port, path, request, metadata)
        assert answer.get(":status") == "200", (path, answer)
        assert answer.get("grpc-status") == expected_status(mode, code), (mode, path, answer)
        assert answer.get("gim-code") == str(int(code)), (path, answer)
        assert answer.get("grpc-message"), (path, answer)


async def test_a_call_that_succeeds_ends_with_status_0(cluster: Any) -> None:
    (alice,) = await cluster.new_user()
    answer = await raw_call(
        cluster.business.ext_port,
        "/pb.UserExt/GetUser",
        ux.GetUserReq(user_id=alice.user_id),
        identity(alice.user_id, alice.device_id, alice.token),
    )
    assert answer.get("grpc-status") == "0", answer
    assert "gim-code" not in answer


@pytest.mark.parametrize("mode", ["gim", "standard"])
async def test_an_unknown_mode_is_refused_and_both_modes_exist(mode: str) -> None:
    from gim.pkg.config import ConfigError, LogicConfig
    from gim.pkg.errors import grpc_status

    assert LogicConfig(grpc_status=mode).grpc_status == mode
    status = grpc_status(Code.UNAUTHORIZED, mode)
    assert status.value[0] == (10000 if mode == "gim" else 16)
    with pytest.raises(ConfigError, match="grpc_status"):
        LogicConfig(grpc_status="grpc")
