"""Rejected requests on the foundation path: a named code, nothing else disturbed, nothing written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from grpc import aio

from gim.client.api import Credentials
from gim.client.connection import TcpConnection, WsConnection
from gim.pkg import rpc
from gim.pkg.errors import GIM_CODE_KEY, Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.schema import device_token

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.callables import ExpectCode, MessageRows
    from gimtest.cluster import Cluster


TEXT = cx.Text(text="x").SerializeToString()


async def expire_token(cluster: Cluster, engine: AsyncEngine, redis: Redis, user: Credentials) -> None:
    """As when the token's time is up: gone from Redis, expired in the database."""
    c = device_token.c
    async with engine.begin() as conn:
        await conn.execute(
            device_token.update().where(c.user_id == user.user_id, c.device_id == user.device_id).values(expire_time=0)
        )
    await redis.delete(f"{cluster.storage.redis_prefix}token:{user.user_id}:{user.device_id}")


async def test_grpc_error_carries_its_status_and_gim_code_trailer(cluster: Cluster) -> None:
    req = lx.SendMessageReq(receiver_type=cx.RT_USER, receiver_id=1, message_type=cx.MT_TEXT, message_content=TEXT)
    with pytest.raises(aio.AioRpcError) as info:
        await cluster.api.logic.SendMessage(req, metadata=[("user_id", "1"), ("device_id", "1"), ("token", "nope")])
    # grpcio reads the status 10000 ("gim" mode) as UNKNOWN; test_status_wire.py reads the wire itself
    expected = {"gim": grpc.StatusCode.UNKNOWN, "standard": grpc.StatusCode.UNAUTHENTICATED}
    assert info.value.code() == expected[cluster.storage.status_mode]
    assert (GIM_CODE_KEY, "10000") in tuple(info.value.trailing_metadata())


async def test_send_message_rejections_write_nothing(
    cluster: Cluster, message_rows: MessageRows, expect_code: ExpectCode
) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    before = await message_rows()
    api = cluster.api
    forged = Credentials(alice.user_id, alice.device_id, "forged-token")
    await expect_code(api.send_message(forged, cx.RT_USER, bob.user_id, TEXT), Code.UNAUTHORIZED)
    other_device = Credentials(alice.user_id, bob.device_id, alice.token)
    await expect_code(api.send_message(other_device, cx.RT_USER, bob.user_id, TEXT), Code.UNAUTHORIZED)
    no_metadata = lx.SendMessageReq(
        receiver_type=cx.RT_USER, receiver_id=bob.user_id, message_type=1, message_content=TEXT
    )
    await expect_code(api.call(api.logic.SendMessage, no_metadata), Code.UNAUTHORIZED)
    await expect_code(api.send_message(alice, cx.RT_USER, 10**15, TEXT), Code.USER_NOT_FOUND)
    await expect_code(api.send_message(alice, cx.RT_UNKNOWN, bob.user_id, TEXT), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, 99, bob.user_id, TEXT), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, cx.RT_USER, bob.user_id, TEXT, message_type=0), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, cx.RT_USER, bob.user_id, TEXT, message_type=42), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, cx.RT_USER, -5, TEXT), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, cx.RT_USER, bob.user_id, b""), Code.BAD_REQUEST)
    await expect_code(api.send_message(alice, cx.RT_USER, bob.user_id, b"x" * 70_000), Code.BAD_REQUEST)
    assert await message_rows() == before
    # and the path still works for them afterwards
    assert await api.send_message(alice, cx.RT_USER, bob.user_id, TEXT) == 1


async def test_sign_in_rejections(cluster: Cluster, expect_code: ExpectCode) -> None:
    api = cluster.api
    device_id = await api.register_device()
    await expect_code(api.sign_in("13900000000", "9999", device_id), Code.WRONG_CODE)
    await expect_code(api.sign_in("13900000000", "0000", 10**12), Code.DEVICE_NOT_FOUND)
    await expect_code(api.sign_in("", "0000", device_id), Code.BAD_REQUEST)
    await expect_code(api.call(api.logic.RegisterDevice, lx.RegisterDeviceReq(type=9)), Code.BAD_REQUEST)
    await expect_code(api.call(api.users.GetUser, ux.GetUserReq(user_id=1)), Code.UNAUTHORIZED)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_long_connection_wrong_token_is_10000_then_closed(cluster: Cluster, transport: str) -> None:
    (user,) = await cluster.new_user()
    conn = await (TcpConnection.open(*cluster.tcp) if transport == "tcp" else WsConnection.open(cluster.ws_url))
    try:
        out = await conn.sign_in(user.user_id, user.device_id, "wrong")
        assert (out.type, out.code) == (cx.PT_SIGN_IN, Code.UNAUTHORIZED)
        await conn.closed.wait()
    finally:
        await conn.close()


async def test_expired_token_is_rejected(cluster: Cluster, engine: AsyncEngine, redis: Redis) -> None:
    (user,) = await cluster.new_user()
    await expire_token(cluster, engine, redis, user)
    conn = await TcpConnection.open(*cluster.tcp)
    try:
        out = await conn.sign_in(user.user_id, user.device_id, user.token)
        assert out.code == Code.UNAUTHORIZED
        await conn.closed.wait()
    finally:
        await conn.close()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_packet_before_sign_in_is_10000_then_closed(cluster: Cluster, transport: str) -> None:
    conn = await (TcpConnection.open(*cluster.tcp) if transport == "tcp" else WsConnection.open(cluster.ws_url))
    try:
        out = await conn.request(cx.PT_SYNC, cx.SyncInput(seq=0).SerializeToString())
        assert out.code == Code.UNAUTHORIZED
        await conn.closed.wait()
    finally:
        await conn.close()


async def test_invalid_protobuf_body_is_an_error_then_closed(cluster: Cluster) -> None:
    conn = await TcpConnection.open(*cluster.tcp)
    try:
        await conn.write_raw(b"\x00\x03\xff\xff\xff")
        out = await conn.next_push()
        assert out.code == Code.BAD_REQUEST
        await conn.closed.wait()
    finally:
        await conn.close()


async def test_oversize_and_zero_frames_close_only_that_connection(cluster: Cluster) -> None:
    (user,) = await cluster.new_user()
    bystander = await TcpConnection.open(*cluster.tcp)
    assert (await bystander.sign_in(user.user_id, user.device_id, user.token)).code == 0
    try:
        for raw in (b"\x00\x00", b"\xff\xff" + b"a" * 10):
            conn = await TcpConnection.open(*cluster.tcp)
            await conn.write_raw(raw)
            out = await conn.next_push()
            assert out.code == Code.BAD_REQUEST and out.message
            await conn.closed.wait()
            await conn.close()
        assert (await bystander.request(cx.PT_HEARTBEAT)).code == 0
    finally:
        await bystander.close()


async def test_bad_packet_data_after_sign_in_is_answered_and_connection_stays(cluster: Cluster) -> None:
    (user,) = await cluster.new_user()
    conn = await TcpConnection.open(*cluster.tcp)
    try:
        assert (await conn.sign_in(user.user_id, user.device_id, user.token)).code == 0
        out = await conn.request(cx.PT_SYNC, b"\xff\xff")
        assert (out.type, out.code) == (cx.PT_SYNC, Code.BAD_REQUEST)
        out = await conn.request(cx.PT_SYNC, cx.SyncInput(seq=-1).SerializeToString())
        assert out.code == Code.BAD_REQUEST
        out = await conn.request(cx.PT_SIGN_IN, b"")
        assert out.code == Code.BAD_REQUEST, "a second sign-in is refused"
        assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    finally:
        await conn.close()


async def test_answers_keep_request_order(cluster: Cluster) -> None:
    (user,) = await cluster.new_user()
    conn = await TcpConnection.open(*cluster.tcp)
    try:
        assert (await conn.sign_in(user.user_id, user.device_id, user.token)).code == 0
        await conn.send(cx.PT_SYNC, cx.SyncInput(seq=0).SerializeToString(), request_id=100)
        await conn.send(cx.PT_HEARTBEAT, request_id=101)
        first, second = await conn.next_push(), await conn.next_push()
        assert [(first.type, first.request_id), (second.type, second.request_id)] == [
            (cx.PT_SYNC, 100),
            (cx.PT_HEARTBEAT, 101),
        ]
    finally:
        await conn.close()


async def test_websocket_query_ids_out_of_range_are_10000(cluster: Cluster) -> None:
    conn = await WsConnection.open(f"{cluster.ws_url}?user_id=99999999999999999999&device_id=1&token=x")
    try:
        out = await conn.next_push()
        assert out.code == Code.UNAUTHORIZED
        await conn.closed.wait()
    finally:
        await conn.close()


async def test_unknown_method_is_unimplemented(cluster: Cluster) -> None:
    (user,) = await cluster.new_user()
    channel = rpc.channel(f"127.0.0.1:{cluster.logic.ext_port}")
    try:
        method = channel.unary_unary("/pb.LogicExt/NoSuchMethod")
        with pytest.raises(aio.AioRpcError) as info:
            await method(b"", metadata=user.metadata())
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()


async def test_bad_request_id_metadata_is_10001(cluster: Cluster, expect_code: ExpectCode) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    req = lx.SendMessageReq(receiver_type=cx.RT_USER, receiver_id=bob.user_id, message_type=1, message_content=TEXT)
    md = alice.metadata() + [("request_id", "abc")]
    await expect_code(rpc.call(cluster.api.logic.SendMessage, req, 10.0, md), Code.BAD_REQUEST)


async def test_long_connection_sign_in_never_trusts_the_auth_cache(
    cluster: Cluster, engine: AsyncEngine, redis: Redis
) -> None:
    (user,) = await cluster.new_user()
    await cluster.api.call(cluster.api.logic.GetFriends, lx.GetFriendsReq(), user)  # checked, then trusted a while
    await expire_token(cluster, engine, redis, user)
    # API calls may ride on the short auth cache (auth_cache_seconds) ...
    await cluster.api.call(cluster.api.logic.GetFriends, lx.GetFriendsReq(), user)
    # ... a sign-in on a long connection always asks the business service.
    conn = await TcpConnection.open(*cluster.tcp)
    try:
        out = await conn.sign_in(user.user_id, user.device_id, user.token)
        assert out.code == Code.UNAUTHORIZED
    finally:
        await conn.close()
