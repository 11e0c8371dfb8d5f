"""Peer address lists: calls are spread over several servers and survive one going away."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc import aio

from gim.internal.business.server import BusinessServer
from gim.pkg import rpc
from gim.pkg.pb import user_int_pb2 as ui
from gim.pkg.pb import user_int_pb2_grpc as ui_grpc
from gim.pkg.redis_client import free_port

if TYPE_CHECKING:
    from gimtest.cluster import Cluster


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:50000", "127.0.0.1:50000"),
        ("logic:50000", "logic:50000"),
        ("10.0.0.1:50000, 10.0.0.2:50000", "ipv4:10.0.0.1:50000,10.0.0.2:50000"),
        ("[::1]:50000,[::2]:50000", "ipv6:[::1]:50000,[::2]:50000"),
    ],
)
def test_target(addr: str, expected: str) -> None:
    assert rpc.target(addr) == expected


def test_a_list_of_names_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="'logic-2:50000' is not IP:port"):
        rpc.target("10.0.0.1:50000,logic-2:50000")


async def test_calls_go_on_when_one_peer_stops(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user(nickname="Alice")
    config = dataclasses.replace(cluster.business.config, int_listen="127.0.0.1:0", ext_listen="127.0.0.1:0")
    second = BusinessServer.from_config(config)
    await second.start()
    peers = f"127.0.0.1:{cluster.business.int_port},127.0.0.1:{second.int_port}"
    channel = rpc.channel(peers)
    stub = ui_grpc.UserIntStub(channel)
    req = ui.GetUsersReq(user_ids={alice.user_id: 0})
    try:
        for _ in range(4):
            assert (await rpc.call(stub.GetUsers, req, 10.0)).users[alice.user_id].nickname == "Alice"
        await second.stop(0.5)
        # A call may race the client noticing the stop (UNAVAILABLE, retryable); once it
        # has noticed, every call lands on the peer that is left.
        with contextlib.suppress(aio.AioRpcError):
            await rpc.call(stub.GetUsers, req, 10.0)
        for _ in range(4):
            assert (await rpc.call(stub.GetUsers, req, 10.0)).users[alice.user_id].nickname == "Alice"
    finally:
        await channel.close()
        await second.stop(0.5)


async def test_a_call_waits_for_a_peer_that_is_starting(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user(nickname="Alice")
    config = dataclasses.replace(
        cluster.business.config, int_listen=f"127.0.0.1:{free_port()}", ext_listen="127.0.0.1:0"
    )
    channel = rpc.channel(config.int_listen, private=True)
    stub = ui_grpc.UserIntStub(channel)
    req = ui.GetUsersReq(user_ids={alice.user_id: 0})
    late = BusinessServer.from_config(config)
    try:
        # nothing listens yet: the channel fails its first connection and backs off
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.GetUsers(req, timeout=5.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await late.start()
        # the peer is up now, possibly inside the channel's back-off: the call waits for it
        assert (await rpc.call(stub.GetUsers, req, 10.0, wait_for_ready=True)).users[alice.user_id].nickname == "Alice"
    finally:
        await channel.close()
        await late.stop(0.5)


async def test_a_burst_of_calls_queues_instead_of_being_cancelled(cluster: Cluster) -> None:
    """gRPC's default would cancel the calls beyond 1,000 not yet taken up (CANCELLED)."""
    (alice,) = await cluster.new_user(nickname="Alice")
    channel = rpc.channel(f"127.0.0.1:{cluster.business.int_port}", private=True)
    stub = ui_grpc.UserIntStub(channel)
    req = ui.GetUsersReq(user_ids={alice.user_id: 0})
    try:
        answers = await asyncio.gather(
            *(rpc.call(stub.GetUsers, req, 60.0) for _ in range(3000)), return_exceptions=True
        )
    finally:
        await channel.close()
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, f"{len(failed)} calls failed, the first: {failed[0]!r}"
    assert all(a.users[alice.user_id].nickname == "Alice" for a in answers)
