"""The three services as real servers in this process, on loopback: business, logic and
connect over one storage."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gim.client.api import Credentials, GimApi
from gim.client.connection import LongConnection, TcpConnection, WsConnection
from gim.internal.business.server import BusinessServer
from gim.internal.connect.server import ConnectServer
from gim.internal.logic.server import LogicServer
from gim.pkg import redis_client, rpc
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2_grpc, user_int_pb2_grpc
from gim.pkg.pb import user_ext_pb2 as ux
from gimtest.backends import Storage

DEV_CODE = "0000"
# A sync from here answers nothing: a test client that has "everything so far" (connect
# holds a device's pushes from its sign-in until its first sync, as clients sync then).
UP_TO_DATE = 2**62
SHARDS = 4


@dataclasses.dataclass
class Cluster:
    storage: Storage
    business: BusinessServer
    logic: LogicServer
    connect: ConnectServer
    api: GimApi
    logic_int: logic_int_pb2_grpc.LogicIntStub
    user_int: user_int_pb2_grpc.UserIntStub

    @property
    def tcp(self) -> tuple[str, int]:
        return "127.0.0.1", self.connect.tcp_port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.connect.ws_port}/ws"

    async def new_user(self, devices: int = 1, nickname: str = "") -> list[Credentials]:
        """A fresh user signed in on `devices` new devices (and given `nickname`)."""
        phone = "1" + uuid.uuid4().int.__str__()[:10]
        creds = []
        for _ in range(devices):
            device_id = await self.api.register_device()
            creds.append(await self.api.sign_in(phone, DEV_CODE, device_id))
        if nickname:
            await self.api.call(self.api.users.UpdateUser, ux.UpdateUserReq(nickname=nickname), creds[0])
        return creds

    async def online(self, creds: Credentials, transport: str = "tcp") -> LongConnection:
        """A long connection of this device, signed in."""
        if transport == "tcp":
            conn: LongConnection = await TcpConnection.open(*self.tcp)
        else:
            conn = await WsConnection.open(self.ws_url)
        out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
        assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
        await conn.sync(UP_TO_DATE)  # as clients do after signing in: pushes flow from here
        return conn

    @staticmethod
    async def sync_all(conn: LongConnection, seq: int) -> list[cx.Message]:
        """Page through PT_SYNC until has_more is false."""
        messages: list[cx.Message] = []
        while True:
            page = await conn.sync(seq)
            messages.extend(page.messages)
            if not page.has_more:
                return messages
            assert page.messages, "has_more with an empty page would loop forever"
            seq = page.messages[-1].seq


def addr(port: int) -> str:
    return f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_cluster(storage: Storage) -> AsyncIterator[Cluster]:
    """business, logic and connect as real gRPC/TCP/WebSocket servers on loopback, each
    bound to port 0 and found at the port it got. One port is picked ahead: logic's
    private one, which business needs before logic can start (logic in turn needs
    business's)."""
    logic_int = addr(redis_client.free_port())
    common: dict[str, Any] = dict(
        database_url=storage.database_url,
        redis_url=storage.redis_url,
        redis_prefix=storage.redis_prefix,
        grpc_status=storage.status_mode,
    )
    any_port = "127.0.0.1:0"
    business = BusinessServer.from_config(
        BusinessConfig(
            **common, message_shards=SHARDS, int_listen=any_port, ext_listen=any_port,
            logic_int_addr=logic_int, dev_code=DEV_CODE,
        )
    )  # fmt: skip
    await business.start()
    logic = LogicServer.from_config(
        LogicConfig(
            **common, message_shards=SHARDS, int_listen=logic_int, ext_listen=any_port,
            business_int_addr=addr(business.int_port),
        )
    )  # fmt: skip
    await logic.start()
    connect = ConnectServer.from_config(
        ConnectConfig(
            redis_url=storage.redis_url, redis_prefix=storage.redis_prefix, grpc_status=storage.status_mode,
            tcp_listen=any_port, ws_listen=any_port, int_listen=any_port, logic_int_addr=logic_int,
        )
    )  # fmt: skip
    await connect.start()
    api = GimApi(addr(logic.ext_port), addr(business.ext_port))
    internal = [rpc.channel(logic_int), rpc.channel(addr(business.int_port))]
    stub = logic_int_pb2_grpc.LogicIntStub(internal[0])
    yield Cluster(storage, business, logic, connect, api, stub, user_int_pb2_grpc.UserIntStub(internal[1]))
    await api.close()
    for channel in internal:
        await channel.close()
    for server in (connect, logic, business):
        await server.stop(1.0)
