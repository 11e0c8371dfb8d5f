"""Redis is a cache, not a home: tokens and acks live in the database, the embedded Redis
saves to disk, `gim run` restarts with everyone still signed in, and sends are stored
while Redis is down (issues 11 and 14)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.client.api import Credentials, GimApi
from gim.client.connection import LongConnection, TcpConnection
from gim.internal.business.server import BusinessServer
from gim.internal.business.tokens import TokenStore, digest
from gim.internal.connect.server import ConnectServer
from gim.internal.logic.acks import AckStore
from gim.internal.logic.server import LogicServer
from gim.pkg import redis_client
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import user_int_pb2 as ui
from gim.pkg.schema import MessageShards, device_ack, device_token
from gimtest.cluster import SHARDS
from gimtest.processes import RUN_LISTENERS, gim_run_env

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gimtest.backends import Storage
    from gimtest.cluster import Cluster


pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

DEV_CODE = "0000"
RUN_PREFIX = "gimrun:"


def _text(body: str) -> bytes:
    return cx.Text(text=body).SerializeToString()


def _phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


async def _eventually(condition, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Poll `await condition()` until it is truthy (at most `timeout` seconds); its value."""
    try:
        async with asyncio.timeout(timeout):
            while not (value := await condition()):
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


async def _stored_ack(engine: AsyncEngine, user_id: int, device_id: int) -> int:
    c = device_ack.c
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(c.seq).where(c.user_id == user_id, c.device_id == device_id))
    return int(value or 0)


async def _delete_prefix(redis: Redis, prefix: str) -> int:
    """What FLUSHALL does to one cluster (the test Redis is shared by concurrent runs)."""
    keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await redis.delete(*keys)
    return len(keys)


# -- the embedded Redis ------------------------------------------------------------------


async def test_embedded_redis_persists_across_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    server = redis_client.EmbeddedRedis(folder, redis_client.free_port())
    await server.start()
    try:
        client = redis_client.connect(server.url)
        try:
            assert await client.config_get("save") == {"save": "60 1"}  # one save point, not "off"
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
            await client.set("kept", b"across restarts")
        finally:
            await client.aclose()
    finally:
        server.stop()

    again = redis_client.EmbeddedRedis(folder, redis_client.free_port())
    await again.start()
    try:
        client = redis_client.connect(again.url)
        try:
            assert await client.get("kept") == b"across restarts"
        finally:
            await client.aclose()
    finally:
        again.stop()


async def test_embedded_redis_without_persistence_saves_nothing(tmp_path: Path) -> None:
    server = redis_client.EmbeddedRedis(tmp_path / "redis", redis_client.free_port(), persist=False)
    await server.start()
    try:
        client = redis_client.connect(server.url)
        try:
            assert await client.config_get("save") == {"save": ""}
            assert await client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            await client.aclose()
    finally:
        server.stop()


# -- tokens and acks: the database decides what Redis does not know ----------------------


async def test_token_found_only_in_the_database_is_accepted_and_cached_again(
    storage: Storage, engine: AsyncEngine, redis: Redis
) -> None:
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex[:6]}:"  # dropped with the run's prefix
    tokens = TokenStore(engine, redis, prefix, ttl=3600)
    user_id, device_id = 10_000_000 + uuid.uuid4().int % 1_000_000, 7
    token = await tokens.issue(user_id, device_id)
    key = f"{prefix}token:{user_id}:{device_id}"
    assert await redis.get(key) == digest(token).encode(), "Redis keeps the digest, never the token"

    await redis.delete(key)  # Redis emptied
    assert await tokens.check_many([(user_id, device_id, token)]) == [None]
    assert await redis.get(key) == digest(token).encode(), "filled again from the database"
    assert 0 < await redis.ttl(key) <= 3600

    # Redis holds another token (one issued while it was unreachable): the database decides
    await redis.set(key, digest("an older token"))
    assert await tokens.check_many([(user_id, device_id, token)]) == [None]
    (wrong,) = await tokens.check_many([(user_id, device_id, "an older token")])
    assert wrong is not None and wrong.code == Code.UNAUTHORIZED

    # a new sign-in replaces the token in both stores
    newer = await tokens.issue(user_id, device_id)
    await redis.delete(key)
    (old,) = await tokens.check_many([(user_id, device_id, token)])
    assert old is not None and old.code == Code.UNAUTHORIZED
    assert await tokens.check_many([(user_id, device_id, newer)]) == [None]


async def test_expired_token_in_the_database_is_rejected(storage: Storage, engine: AsyncEngine, redis: Redis) -> None:
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex[:6]}:"
    tokens = TokenStore(engine, redis, prefix, ttl=3600)
    user_id = 20_000_000 + uuid.uuid4().int % 1_000_000
    token = await tokens.issue(user_id, 1)
    c = device_token.c
    async with engine.begin() as conn:
        await conn.execute(device_token.update().where(c.user_id == user_id).values(expire_time=0))
    await redis.delete(f"{prefix}token:{user_id}:1")
    (error,) = await tokens.check_many([(user_id, 1, token)])
    assert error is not None and error.code == Code.UNAUTHORIZED
    assert "expired" in error.message
    assert await redis.get(f"{prefix}token:{user_id}:1") is None, "an expired token is not cached again"


async def test_acks_are_written_behind_only_raising_and_read_back_from_the_database(
    storage: Storage, engine: AsyncEngine, redis: Redis
) -> None:
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex[:6]}:"
    acks = AckStore(engine, redis, prefix)
    user_id = 30_000_000 + uuid.uuid4().int % 1_000_000
    try:
        await acks.ack(user_id, 1, 10)
        await acks.ack(user_id, 1, 4)  # late: never moves the device back
        await acks.ack(user_id, 2, 3)
        assert await _eventually(lambda: _stored_ack(engine, user_id, 1), "device 1 written behind") == 10
        assert await _eventually(lambda: _stored_ack(engine, user_id, 2), "device 2 written behind") == 3
        await acks.ack(user_id, 1, 6)
        await acks.flush()
        assert await _stored_ack(engine, user_id, 1) == 10, "the database only raises too"

        await redis.delete(f"{prefix}ack:{user_id}")  # Redis emptied
        await acks.ack(user_id, 2, 5)  # Redis now knows one device: not the whole user
        fresh = AckStore(engine, redis, prefix)  # another logic node, nothing in memory
        assert await fresh.highest(user_id) == 10
        assert await fresh.of_device(user_id, 2) == 5
        cached = await redis.hgetall(f"{prefix}ack:{user_id}")
        assert cached == {b"1": b"10", b"2": b"5", b"_": b"1"}, "filled again, marked complete"
    finally:
        await acks.close()
    assert await _stored_ack(engine, user_id, 2) == 5, "close() writes what is left"


async def test_concurrent_ack_reads_go_together_each_user_answered_alone(
    storage: Storage, engine: AsyncEngine, redis: Redis
) -> None:
    """A crowd of devices syncing at once: their users' acks are read in one Redis pipeline
    and one database query; each user still gets its own devices' acks, whether Redis had
    them complete, partly (acked through another node) or not at all."""
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex[:6]}:"
    first = 40_000_000 + uuid.uuid4().int % 1_000_000
    users = list(range(first, first + 30))
    async with engine.begin() as conn:  # user i's device 1 acked i in the database (user 0: none)
        await conn.execute(
            device_ack.insert(), [{"user_id": u, "device_id": 1, "seq": i} for i, u in enumerate(users) if i]
        )
    await redis.hset(f"{prefix}ack:{users[1]}", mapping={"1": 1, "2": 50})  # not complete: read the database too
    await redis.hset(f"{prefix}ack:{users[2]}", mapping={"1": 70, "_": 1})  # complete: Redis only
    selects: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "device_ack" in statement:
            selects.append(statement)

    acks = AckStore(engine, redis, prefix)
    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        highest = await asyncio.gather(*(acks.highest(u) for u in users), acks.of_device(users[1], 2))
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
        await acks.close()
    assert highest == [0, 50, 70, *range(3, 30), 50]
    assert len(selects) == 1, selects
    assert await redis.hgetall(f"{prefix}ack:{users[1]}") == {b"1": b"1", b"2": b"50", b"_": b"1"}
    assert await redis.hgetall(f"{prefix}ack:{users[5]}") == {b"1": b"5", b"_": b"1"}
    assert await redis.hgetall(f"{prefix}ack:{users[0]}") == {b"_": b"1"}
    assert await _stored_ack(engine, users[1], 2) == 50, "what Redis alone knew is written behind"


# -- the cluster with its Redis keys gone ------------------------------------------------


async def test_signed_in_devices_and_acks_survive_an_emptied_redis(
    cluster: Cluster, engine: AsyncEngine, redis: Redis
) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    for i in range(3):
        await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, _text(f"m{i}"))
    conn = await cluster.online(bob)
    try:
        received = await cluster.sync_all(conn, 0)
        assert [m.message_content for m in received] == [_text(f"m{i}") for i in range(3)]
        acked = received[1].seq
        await conn.ack(acked)
        assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
    finally:
        await conn.close()
    assert await _eventually(lambda: _stored_ack(engine, bob.user_id, bob.device_id), "the ack written behind") == acked

    assert await _delete_prefix(redis, cluster.storage.redis_prefix) > 0

    # business answers UserInt.Auth from the database (a refusal would raise here)
    await cluster.user_int.Auth(ui.AuthReq(user_id=bob.user_id, device_id=bob.device_id, token=bob.token), timeout=10)
    again = await cluster.online(bob)  # a long-connection sign-in always asks business
    try:
        after_ack = await cluster.sync_all(again, 0)
        assert [m.seq for m in after_ack] == [received[2].seq], "seq 0 starts after the device's ack"
    finally:
        await again.close()
    token_key = f"{cluster.storage.redis_prefix}token:{bob.user_id}:{bob.device_id}"
    assert await redis.get(token_key) == digest(bob.token).encode(), "Redis is filled again"
    # and the API goes on with the old credentials
    friends = await cluster.api.call(cluster.api.logic.GetFriends, lx.GetFriendsReq(), alice)
    assert list(friends.friends) == []


# -- `gim run` restarted on the same folder ----------------------------------------------


class GimRun:
    """`gim run` as a child process on fixed free ports and one folder; stopped by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {k: redis_client.free_port() for k in (*RUN_LISTENERS, "redis")}
        self.addr = {k: f"127.0.0.1:{p}" for k, p in self.ports.items()}
        database, redis_url = f"sqlite+aiosqlite:///{folder / 'gim.db'}", f"redis://{self.addr['redis']}/0"
        self.env = gim_run_env(self.addr, database, redis_url, GIM_REDIS_PREFIX=RUN_PREFIX)
        self.proc: asyncio.subprocess.Process | None = None
        self.output = bytearray()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start it and wait until the services listen (the banner comes after: demo users)."""
        gim = Path(sys.executable).with_name("gim")
        self.proc = await asyncio.create_subprocess_exec(
            str(gim), "run", "--var", str(self.folder / "var"),
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._reader = asyncio.get_running_loop().create_task(self._read_output())
        async with asyncio.timeout(90):
            while not self._listening():
                assert self.proc.returncode is None, f"gim run ended early:\n{self.output.decode()}"
                await asyncio.sleep(0.1)

    def _listening(self) -> bool:
        return all(redis_client.port_open("127.0.0.1", self.ports[k]) for k in ("tcp", "l_ext", "b_ext"))

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.output += chunk

    async def stop(self) -> int | None:
        """Ctrl-C, as a user stops it; SIGKILL if it has not ended within a minute."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(60):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return self.proc.returncode


@contextlib.asynccontextmanager
async def gim_run(run: GimRun) -> AsyncIterator[GimRun]:
    """`gim run` started on `run`'s folder and ports; stopped with Ctrl-C (killed on a failure)."""
    await run.start()
    try:
        yield run
    finally:
        code = await run.stop()
    assert code == 0, run.output.decode()


async def test_gim_run_restart_keeps_users_signed_in_and_their_acks(tmp_path: Path) -> None:
    run = GimRun(tmp_path)
    async with gim_run(run):
        api = GimApi(run.addr["l_ext"], run.addr["b_ext"])
        try:
            alice = await api.sign_in(_phone(), DEV_CODE, await api.register_device())
            bob = await api.sign_in(_phone(), DEV_CODE, await api.register_device())
            for i in range(3):
                await api.send_message(alice, cx.RT_USER, bob.user_id, _text(f"m{i}"))
        finally:
            await api.close()
        conn = await _signed_in(run, bob)
        try:
            page = await conn.sync(0)
            assert len(page.messages) == 3
            await conn.ack(page.messages[1].seq)
            assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
        finally:
            await conn.close()

    async with gim_run(run):
        probe = redis_client.connect(f"redis://{run.addr['redis']}/0")
        try:
            assert await probe.exists(f"{RUN_PREFIX}token:{bob.user_id}:{bob.device_id}"), (
                "the embedded Redis kept its data"
            )
        finally:
            await probe.aclose()
        api = GimApi(run.addr["l_ext"], run.addr["b_ext"])
        try:  # a LogicExt call with the old credentials
            friends = await api.call(api.logic.GetFriends, lx.GetFriendsReq(), alice)
            assert list(friends.friends) == []
            assert await api.send_message(alice, cx.RT_USER, bob.user_id, _text("after the restart")) > 0
        finally:
            await api.close()
        conn = await _signed_in(run, bob)  # a long-connection sign-in with the old token
        try:
            page = await conn.sync(0)
            assert [m.message_content for m in page.messages] == [_text("m2"), _text("after the restart")]
        finally:
            await conn.close()


async def _signed_in(run: GimRun, creds: Credentials) -> LongConnection:
    conn = await TcpConnection.open("127.0.0.1", run.ports["tcp"])
    out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
    if out.code:
        await conn.close()
    assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
    return conn


# -- sends while Redis is down -------------------------------------------------------------


class OwnRedisCluster:
    """business, logic and connect as in conftest's `cluster`, on the run's database but
    with a Redis of their own that the test can stop and start again (same port)."""

    def __init__(self, storage: Storage, folder: Path) -> None:
        self.redis = redis_client.EmbeddedRedis(folder, redis_client.free_port(), persist=False)
        ports = {name: redis_client.free_port() for name in ("b_int", "b_ext", "l_int", "l_ext", "c_int")}
        addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        common = dict(
            redis_url=self.redis.url, redis_prefix=f"gimdown:{uuid.uuid4().hex[:8]}:", grpc_status=storage.status_mode
        )
        stored = dict(common, database_url=storage.database_url, message_shards=SHARDS)
        self.business = BusinessServer.from_config(
            BusinessConfig(
                **stored, int_listen=addr["b_int"], ext_listen=addr["b_ext"],
                logic_int_addr=addr["l_int"], dev_code=DEV_CODE,
            )
        )  # fmt: skip
        self.logic = LogicServer.from_config(
            LogicConfig(
                **stored, int_listen=addr["l_int"], ext_listen=addr["l_ext"],
                business_int_addr=addr["b_int"],
            )
        )  # fmt: skip
        self.connect = ConnectServer.from_config(
            ConnectConfig(
                **common, tcp_listen="127.0.0.1:0", ws_listen="127.0.0.1:0", int_listen=addr["c_int"],
                logic_int_addr=addr["l_int"],
            )
        )  # fmt: skip
        self.api = GimApi(addr["l_ext"], addr["b_ext"])

    async def new_user(self) -> Credentials:
        return await self.api.sign_in(_phone(), DEV_CODE, await self.api.register_device())

    async def online(self, creds: Credentials) -> LongConnection:
        conn = await TcpConnection.open("127.0.0.1", self.connect.tcp_port)
        out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
        assert (out.type, out.code) == (cx.PT_SIGN_IN, 0), out.message
        return conn


@contextlib.asynccontextmanager
async def own_redis_cluster(storage: Storage, folder: Path) -> AsyncIterator[OwnRedisCluster]:
    nodes = OwnRedisCluster(storage, folder)
    await nodes.redis.start()
    started = []
    try:
        for server in (nodes.business, nodes.logic, nodes.connect):
            await server.start()
            started.append(server)
        yield nodes
    finally:
        await nodes.api.close()
        if not redis_client.port_open("127.0.0.1", nodes.redis.port):
            await nodes.redis.start()  # connect leaves its liveness key on the way out
        try:
            for server in reversed(started):
                await server.stop(1.0)
        finally:
            nodes.redis.stop()


async def test_sends_are_stored_while_redis_is_down_and_pushed_again_when_it_is_back(
    storage, engine, tmp_path: Path, log_events
) -> None:  # type: ignore[no-untyped-def]
    async with own_redis_cluster(storage, tmp_path / "redis") as nodes:
        alice = await nodes.new_user()
        bob = await nodes.new_user()
        conn = await nodes.online(bob)
        try:
            await nodes.api.send_message(alice, cx.RT_USER, bob.user_id, _text("before"))
            assert (await conn.next_message()).message_content == _text("before")

            nodes.redis.stop()
            # a send from a signed-in user is stored (user look-ups and tokens from the database)
            seq = await nodes.api.send_message(alice, cx.RT_USER, bob.user_id, _text("while down"))
            assert seq > 0
            # a sign-in, and a send with its new token, need no Redis either
            carol = await nodes.new_user()
            assert await nodes.api.send_message(carol, cx.RT_USER, bob.user_id, _text("from carol")) > 0
            stored = [m async for m in _rows_of(engine, bob.user_id)]
            assert stored[-2:] == [_text("while down"), _text("from carol")]
            assert any(e["event"] == "redis_unreachable" for e in log_events), "the outage is logged"

            await nodes.redis.start()  # back, and empty
            pushed = None
            for attempt in range(30):  # each try waits at most a second for its push
                await nodes.api.send_message(alice, cx.RT_USER, bob.user_id, _text(f"back {attempt}"))
                pushed = await _next_text(conn, "back ", timeout=1.0)
                if pushed is not None:
                    break
            assert pushed is not None, "pushes resume once Redis is back"
            # what could not be pushed (if any: a node seen alive within a second needs no
            # Redis) is found by sync
            synced = [m.message_content for m in await _sync_all(conn, 0)]
            assert _text("while down") in synced and _text("from carol") in synced
        finally:
            await conn.close()


async def _next_text(conn: LongConnection, prefix: str, timeout: float) -> str | None:
    """The next pushed text that starts with `prefix` (others are skipped), or None."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                text = cx.Text.FromString((await conn.next_message()).message_content).text
                if text.startswith(prefix):
                    return text
    return None


async def _rows_of(engine: AsyncEngine, user_id: int) -> AsyncIterator[bytes]:
    table = MessageShards(SHARDS).table_for(user_id)
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(table.c.content).where(table.c.user_id == user_id).order_by(table.c.seq))
        for (content,) in rows:
            yield bytes(content)


async def _sync_all(conn: LongConnection, seq: int) -> list[cx.Message]:
    messages: list[cx.Message] = []
    for _ in range(100):
        page = await conn.sync(seq)
        messages.extend(page.messages)
        if not page.has_more:
            return messages
        seq = page.messages[-1].seq
    raise AssertionError("sync did not end in 100 pages")
