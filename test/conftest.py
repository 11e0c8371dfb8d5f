"""Fixtures (the helpers they hand out are in test/gimtest/): real MariaDB/Redis (GIM_TEST_MYSQL_URL / GIM_TEST_REDIS_URL) and the
embedded default (SQLite + the bundled redis-server), and the three real services
started in this process on loopback.

Outside CI a missing server falls back to the embedded one; in CI (CI=true) it fails.
"""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog.testing
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.client.api import Credentials
from gim.internal.connect.server import ConnectServer
from gim.pkg import db, log, redis_client
from gim.pkg.config import ConnectConfig
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2_grpc
from gim.pkg.schema import MessageShards
from gimtest.backends import BACKEND_IDS, Storage, mysql_database, redis_url_or
from gimtest.callables import ConnectNodes, Crashes, DecodeCommand, ExpectCode, M, MessageRows, SdkClients
from gimtest.cluster import SHARDS, Cluster, addr, running_cluster
from gimtest.connections import Conns, FaultProxy
from gimtest.processes import ConnectProcess

log.setup("warning")


@pytest.fixture(scope="session")
async def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    server = redis_client.EmbeddedRedis(tmp_path_factory.mktemp("redis"), redis_client.free_port(), persist=False)
    await server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session", params=["mysql", "embedded"], ids=BACKEND_IDS.get)
async def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedded_redis: str
) -> AsyncIterator[Storage]:
    """One database and one Redis key prefix for the whole run, dropped at the end."""
    prefix = f"gimtest:{uuid.uuid4().hex[:8]}:"
    if request.param == "mysql":
        database = await mysql_database()
        if database is None:  # outside CI: the embedded case runs these tests on SQLite
            pytest.skip("MySQL is not reachable (GIM_TEST_MYSQL_URL): the embedded case covers SQLite")
        redis_url = await redis_url_or(embedded_redis)
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


@pytest.fixture(scope="session")
async def cluster(storage: Storage) -> AsyncIterator[Cluster]:
    """business, logic and connect as real gRPC/TCP/WebSocket servers on loopback."""
    async with running_cluster(storage) as running:
        yield running


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
    url = await mysql_database()
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


@pytest.fixture
async def fault_proxy(cluster: Cluster) -> AsyncIterator[FaultProxy]:
    """A `FaultProxy` in front of the cluster's connect TCP port."""
    proxy = FaultProxy(cluster.tcp)
    await proxy.start()
    yield proxy
    await proxy.stop()


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
            logic_int_addr=addr(cluster.logic.int_port),
        )
        values.update(overrides)
        server = ConnectServer.from_config(ConnectConfig(**values))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(1.0)


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
