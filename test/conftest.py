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
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog.testing
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.client.api import Credentials, GimApi
from gim.client.connection import LongConnection, TcpConnection, WsConnection
from gim.internal.business.server import BusinessServer
from gim.internal.connect.server import ConnectServer
from gim.internal.logic.server import LogicServer
from gim.pkg import db, log, redis_client, rpc
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2_grpc
from gim.pkg.schema import MessageShards

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEV_CODE = "0000"
SHARDS = 4

log.setup("warning")


@dataclasses.dataclass(frozen=True)
class Storage:
    name: str
    database_url: str
    redis_url: str
    redis_prefix: str


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
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable(f"MySQL at {base}", exc)
        return None
    return url.render_as_string(hide_password=False)


async def _redis_url(embedded_url: str) -> str:
    url = os.environ.get("GIM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    client = redis_client.connect(url)
    try:
        await client.ping()
        return url
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis at {url}", exc)
        return embedded_url
    finally:
        await client.aclose()


@pytest.fixture(scope="session", params=["mysql", "embedded"])
async def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedded_redis: str
) -> AsyncIterator[Storage]:
    """One database and one Redis key prefix for the whole run, dropped at the end."""
    prefix = f"gimtest:{uuid.uuid4().hex[:8]}:"
    if request.param == "mysql":
        database = await _mysql_database()
        redis_url = await _redis_url(embedded_redis)
    else:
        database = None
        redis_url = embedded_redis
    if database is None:  # embedded, or MySQL missing outside CI
        database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'gim.db'}"
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

    @property
    def tcp(self) -> tuple[str, int]:
        return "127.0.0.1", self.connect.tcp_port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.connect.ws_port}/ws"

    async def new_user(self, devices: int = 1) -> list[Credentials]:
        """A fresh user signed in on `devices` new devices."""
        phone = "1" + uuid.uuid4().int.__str__()[:10]
        creds = []
        for _ in range(devices):
            device_id = await self.api.register_device()
            creds.append(await self.api.sign_in(phone, DEV_CODE, device_id))
        return creds


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
async def cluster(storage: Storage) -> AsyncIterator[Cluster]:
    """business, logic and connect as real gRPC/TCP/WebSocket servers on loopback."""
    ports = {name: redis_client.free_port() for name in ("b_int", "b_ext", "l_int", "l_ext", "c_int")}
    common = dict(database_url=storage.database_url, redis_url=storage.redis_url, redis_prefix=storage.redis_prefix)
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
            tcp_listen="127.0.0.1:0",
            ws_listen="127.0.0.1:0",
            int_listen=_addr(ports["c_int"]),
            logic_int_addr=_addr(ports["l_int"]),
        )
    )
    for server in (business, logic, connect):
        await server.start()
    api = GimApi(_addr(ports["l_ext"]), _addr(ports["b_ext"]))
    yield Cluster(storage, business, logic, connect, api)
    await api.close()
    for server in (connect, logic, business):
        await server.stop(1.0)


@pytest.fixture
def message_rows(engine: AsyncEngine) -> object:
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


# -- connect: extra nodes, long connections, log capture (issue 3) ---------------------


@pytest.fixture
async def connect_node(cluster: Cluster) -> AsyncIterator[Any]:
    """connect_node(**config) -> a started extra ConnectServer against the cluster's logic
    (same Redis), e.g. with a short idle_timeout; stopped after the test."""
    started: list[ConnectServer] = []

    async def start(**overrides: Any) -> ConnectServer:
        values: dict[str, Any] = dict(
            redis_url=cluster.storage.redis_url,
            redis_prefix=cluster.storage.redis_prefix,
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
async def logic_int(cluster: Cluster) -> AsyncIterator[logic_int_pb2_grpc.LogicIntStub]:
    """A LogicInt stub for the cluster's logic (what business backends call)."""
    channel = rpc.channel(_addr(cluster.logic.int_port))
    yield logic_int_pb2_grpc.LogicIntStub(channel)
    await channel.close()


@pytest.fixture
def crashes(caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
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
