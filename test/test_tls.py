"""TLS where traffic crosses a network, and private calls authenticated (issue 12, items 2
and 3): a whole cluster on TLS (TCP, WSS, LogicExt/UserExt and every private port and
channel) with an internal secret, built in this process on loopback with certificates made
at test time (trustme); plaintext is refused where TLS is required, and a private call
without the secret, or with a wrong one, is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc import aio

from gim.client import Client, Timing
from gim.client.api import Credentials, GimApi
from gim.client.connection import TcpConnection, WsConnection
from gim.internal.business.server import BusinessServer
from gim.internal.connect.server import ConnectServer
from gim.internal.logic.server import LogicServer
from gim.pkg import redis_client, rpc
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig
from gim.pkg.errors import GIM_CODE_KEY, Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import (
    connect_int_pb2,
    connect_int_pb2_grpc,
    logic_int_pb2,
    logic_int_pb2_grpc,
    user_int_pb2,
    user_int_pb2_grpc,
)
from gim.pkg.security import SECRET_KEY, Outbound, Security, client_credentials, client_ssl_context

SECRET = "test-internal-secret-0123456789"
DEV_CODE = "0000"
WAIT = 20.0


@dataclasses.dataclass(frozen=True)
class Certs:
    ca_file: str
    cert_file: str
    key_file: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and one certificate for 127.0.0.1 / localhost (server and client use), as files."""
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(folder / "node.pem"))
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(str(folder / "node.pem"), append=True)
    leaf.private_key_pem.write_to_path(str(folder / "node.key"))
    return Certs(str(folder / "ca.pem"), str(folder / "node.pem"), str(folder / "node.key"))


@dataclasses.dataclass
class TlsCluster:
    business: BusinessServer
    logic: LogicServer
    connect: ConnectServer
    api: GimApi
    certs: Certs

    def addr(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    @property
    def context(self) -> ssl.SSLContext:
        return client_ssl_context(self.certs.ca_file)

    async def user(self) -> Credentials:
        return await self.api.sign_in_by_phone("1" + str(uuid.uuid4().int)[:10], DEV_CODE)

    def internal(self, port: int, outbound: Outbound) -> aio.Channel:
        return rpc.channel(self.addr(port), private=True, outbound=outbound)

    def tls_outbound(self, secret: str = "") -> Outbound:
        return Outbound(credentials=client_credentials(self.certs.ca_file), secret=secret)


@pytest.fixture(scope="module")
async def tls_cluster(storage: Any, certs: Certs) -> AsyncIterator[TlsCluster]:
    """business, logic and connect with every listener on TLS and the internal secret set;
    this process's channels to private ports (logic's deliveries) configured like
    pkg/service.serve configures a node's."""
    ports = {name: redis_client.free_port() for name in ("b_int", "b_ext", "l_int", "l_ext", "c_int")}
    common: dict[str, Any] = dict(
        redis_url=storage.redis_url,
        redis_prefix=storage.redis_prefix,
        grpc_status=storage.status_mode,
        tls="all",
        tls_cert_file=certs.cert_file,
        tls_key_file=certs.key_file,
        tls_ca_file=certs.ca_file,
        internal_secret=SECRET,
    )
    stored = dict(database_url=storage.database_url, message_shards=4)
    at = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    business_config = BusinessConfig(**common, **stored, int_listen=at["b_int"], ext_listen=at["b_ext"],
                                     logic_int_addr=at["l_int"], dev_code=DEV_CODE)  # fmt: skip
    logic_config = LogicConfig(
        **common, **stored, int_listen=at["l_int"], ext_listen=at["l_ext"], business_int_addr=at["b_int"]
    )
    connect_config = ConnectConfig(**common, tcp_listen="127.0.0.1:0", ws_listen="127.0.0.1:0", int_listen=at["c_int"],
                                   logic_int_addr=at["l_int"])  # fmt: skip
    rpc.configure(Security.from_config(logic_config).outbound)
    servers = [BusinessServer.from_config(business_config), LogicServer.from_config(logic_config)]
    servers.append(ConnectServer.from_config(connect_config))
    try:
        for server in servers:
            await server.start()
        api = GimApi(at["l_ext"], at["b_ext"], tls=True, ca_file=certs.ca_file)
        yield TlsCluster(*servers, api=api, certs=certs)  # type: ignore[arg-type]
        await api.close()
    finally:
        for server in reversed(servers):
            await server.stop(1.0)
        rpc.configure(Outbound())


async def _push_reaches(cluster: TlsCluster, conn: TcpConnection | WsConnection, to: Credentials, text: str) -> None:
    sender = await cluster.user()
    content = cx.Text(text=text).SerializeToString()
    seq = await cluster.api.send_message(sender, cx.RT_USER, to.user_id, content)
    assert seq > 0
    message = await conn.next_message(timeout=WAIT)
    assert (message.sender.sender_id, cx.Text.FromString(message.message_content).text) == (sender.user_id, text)


async def test_tcp_tls_sign_in_and_push_end_to_end(tls_cluster: TlsCluster) -> None:
    """Sign-in over gRPC-TLS (UserExt, LogicExt), the long connection over TLS with the
    same framing, and a push that went LogicExt -> logic -> ConnectInt over TLS with the secret."""
    me = await tls_cluster.user()
    conn = await TcpConnection.open("127.0.0.1", tls_cluster.connect.tcp_port, ssl=tls_cluster.context)
    try:
        out = await conn.sign_in(me.user_id, me.device_id, me.token)
        assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
        await _push_reaches(tls_cluster, conn, me, "over tls")
        assert (await conn.sync(0)).messages[-1].seq >= 1  # sync: connect -> LogicInt over TLS
    finally:
        await conn.close()


async def test_wss_end_to_end(tls_cluster: TlsCluster) -> None:
    me = await tls_cluster.user()
    url = f"wss://127.0.0.1:{tls_cluster.connect.ws_port}/ws"
    conn = await WsConnection.open(url, ssl=tls_cluster.context)
    try:
        out = await conn.sign_in(me.user_id, me.device_id, me.token)
        assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
        await _push_reaches(tls_cluster, conn, me, "over wss")
    finally:
        await conn.close()


async def test_the_sdk_client_connects_with_tls_and_a_ca_file(tls_cluster: TlsCluster) -> None:
    me = await tls_cluster.user()
    client = Client(
        credentials=me,
        logic_addr=tls_cluster.addr(tls_cluster.logic.ext_port),
        user_addr=tls_cluster.addr(tls_cluster.business.ext_port),
        tcp=("127.0.0.1", tls_cluster.connect.tcp_port),
        last_seq=0,
        tls=True,
        ca_file=tls_cluster.certs.ca_file,
        timing=Timing(request_timeout=10.0, backoff_initial=0.05, backoff_max=0.5),
    )
    try:
        await client.start(timeout=WAIT)
        other = await tls_cluster.user()
        await client.send_text(other.user_id, "sdk over tls")
        async with asyncio.timeout(WAIT):
            event = await client.next_event()
        assert event.text == "sdk over tls"
    finally:
        await client.close()


async def test_plain_tcp_to_a_tls_listener_gets_no_sign_in(tls_cluster: TlsCluster) -> None:
    me = await tls_cluster.user()
    conn = await TcpConnection.open("127.0.0.1", tls_cluster.connect.tcp_port)
    try:
        with pytest.raises(ConnectionError):
            await conn.sign_in(me.user_id, me.device_id, me.token, timeout=WAIT)
        assert conn.closed.is_set()
    finally:
        await conn.close()


async def test_plain_websocket_to_a_wss_listener_fails(tls_cluster: TlsCluster) -> None:
    with pytest.raises((OSError, EOFError, Exception)) as info:
        await WsConnection.open(f"ws://127.0.0.1:{tls_cluster.connect.ws_port}/ws", open_timeout=WAIT)
    assert not isinstance(info.value, TimeoutError), "refused, not left hanging"


async def test_plain_grpc_to_tls_ports_fails(tls_cluster: TlsCluster) -> None:
    plain = GimApi(
        tls_cluster.addr(tls_cluster.logic.ext_port), tls_cluster.addr(tls_cluster.business.ext_port), timeout=5
    )
    try:
        with pytest.raises(aio.AioRpcError) as info:
            await plain.register_device()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        internal = tls_cluster.internal(tls_cluster.logic.int_port, Outbound(secret=SECRET))  # the secret, no TLS
        with pytest.raises(aio.AioRpcError) as info:
            await logic_int_pb2_grpc.LogicIntStub(internal).GetDevice(
                logic_int_pb2.GetDeviceReq(device_id=1), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await internal.close()
    finally:
        await plain.close()


def _refusal(error: aio.AioRpcError) -> tuple[grpc.StatusCode, str | None]:
    return error.code(), dict(error.trailing_metadata() or ()).get(GIM_CODE_KEY)


@pytest.mark.parametrize("secret", ["", "wrong-secret-0123456789"])
async def test_a_private_call_without_the_right_secret_is_refused(
    tls_cluster: TlsCluster, secret: str, log_events: list[dict[str, Any]]
) -> None:
    """Every private server (LogicInt, UserInt/BusinessInt, ConnectInt) refuses it:
    UNAUTHENTICATED with gim code 10000, nothing done, the refusal logged."""
    me = await tls_cluster.user()
    calls = {
        tls_cluster.logic.int_port: lambda ch: logic_int_pb2_grpc.LogicIntStub(ch).GetDevice(
            logic_int_pb2.GetDeviceReq(device_id=me.device_id), timeout=5),
        tls_cluster.business.int_port: lambda ch: user_int_pb2_grpc.UserIntStub(ch).Auth(
            user_int_pb2.AuthReq(user_id=me.user_id, device_id=me.device_id, token=me.token), timeout=5),
        tls_cluster.connect.int_port: lambda ch: connect_int_pb2_grpc.ConnectIntStub(ch).DeliverMessage(
            connect_int_pb2.DeliverMessageReq(device_id=me.device_id), timeout=5),
    }  # fmt: skip
    for port, call in calls.items():
        channel = tls_cluster.internal(port, tls_cluster.tls_outbound(secret))
        try:
            with pytest.raises(aio.AioRpcError) as info:
                await call(channel)
            assert _refusal(info.value) == (grpc.StatusCode.UNAUTHENTICATED, str(int(Code.UNAUTHORIZED))), port
        finally:
            await channel.close()
    refused = [e for e in log_events if e["event"] == "internal_call_refused"]
    assert refused and all(("no " if not secret else "wrong ") in e["kind"] for e in refused)
    assert all(SECRET not in str(e) and (not secret or secret not in str(e)) for e in refused), "no secret in the log"


async def test_a_private_call_with_the_secret_works(tls_cluster: TlsCluster) -> None:
    me = await tls_cluster.user()
    channel = tls_cluster.internal(tls_cluster.logic.int_port, tls_cluster.tls_outbound(SECRET))
    try:
        resp = await logic_int_pb2_grpc.LogicIntStub(channel).GetDevice(
            logic_int_pb2.GetDeviceReq(device_id=me.device_id), timeout=5
        )
        assert resp.device.device_id == me.device_id
    finally:
        await channel.close()
    channel = tls_cluster.internal(tls_cluster.business.int_port, tls_cluster.tls_outbound(SECRET))
    try:
        auth = user_int_pb2.AuthReq(user_id=me.user_id, device_id=me.device_id, token=me.token)
        await user_int_pb2_grpc.UserIntStub(channel).Auth(auth, timeout=5)  # raises if refused
    finally:
        await channel.close()


async def test_a_business_backend_sends_the_secret_as_metadata(tls_cluster: TlsCluster) -> None:
    """What docs/security.md tells a business backend: the metadata gim-internal-secret on
    a plain grpc channel (TLS with the CA, no gim code)."""
    me = await tls_cluster.user()
    credentials = grpc.ssl_channel_credentials(Path(tls_cluster.certs.ca_file).read_bytes())
    async with aio.secure_channel(tls_cluster.addr(tls_cluster.logic.int_port), credentials) as channel:
        stub = logic_int_pb2_grpc.LogicIntStub(channel)
        req = logic_int_pb2.GetDeviceReq(device_id=me.device_id)
        resp = await stub.GetDevice(req, metadata=((SECRET_KEY, SECRET),), timeout=5)
        assert resp.device.device_id == me.device_id
