"""What a benchmark runs against: its own storage and its own gim nodes.

`Storage` is a fresh database (a temporary SQLite file by default, or a new MySQL
database on `--mysql`) and a fresh Redis key prefix (an embedded redis-server by default,
or `--redis`), both removed afterwards. `Deployment` starts business, logic and connect
nodes on loopback with `gim.internal.launcher` and seeds users, devices and tokens
directly in storage (the set-up is not what is measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.bench.fleet import Behaviour, Device, Endpoint
from gim.bench.report import progress
from gim.bench.target import Target
from gim.client.api import Credentials, GimApi
from gim.internal.business.tokens import TokenStore
from gim.internal.launcher import Launcher, local_nodes
from gim.pkg import db, redis_client
from gim.pkg.schema import MessageShards
from gim.pkg.schema import device as device_table
from gim.pkg.schema import user as user_table

DEV_CODE = "0000"
SEED_CHUNK = 1000
TOKEN_BATCH = 50  # tokens issued concurrently (the Redis client's pool is bounded)

# A benchmark measures how fast gim goes, not its abuse limits: a bench sender sends far
# more than an app user would (docs/security.md "Limits"), so the per-user rates are off.
NO_RATE_LIMITS = {"GIM_LOGIC_SEND_LIMIT": "", "GIM_LOGIC_ROOM_PUSH_LIMIT": "", "GIM_LOGIC_NEW_ROOM_LIMIT": ""}
# Logic workers share one port, and the kernel spreads connections, not calls: the
# senders call it over this many connections per worker (as many apps would).
CALLERS_PER_WORKER = 4


@dataclasses.dataclass(frozen=True)
class StorageOptions:
    mysql: str = ""  # server URL; empty = a temporary SQLite file
    redis: str = ""  # URL; empty = an embedded redis-server
    shards: int = 10
    target: Target | None = None  # running services and their storage: nothing started or dropped
    clients: Behaviour = Behaviour()  # what the bench's clients do: request_id, acks, heartbeats (as the SDK)
    node_code: str = ""  # a folder holding another `gim` package: the nodes started run that code (a baseline)


@dataclasses.dataclass
class Storage:
    database_url: str
    redis_url: str
    redis_prefix: str
    shards: MessageShards
    engine: AsyncEngine
    folder: Path
    target: Target | None = None
    node_code: str = ""  # StorageOptions.node_code


@contextlib.asynccontextmanager
async def storage(options: StorageOptions) -> AsyncIterator[Storage]:
    if options.target is not None:
        async with _target_storage(options.target) as store:
            yield store
        return
    run = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="gim-bench-") as tmp:
        folder = Path(tmp)
        if options.mysql:
            url = db.normalize_url(options.mysql).set(database=f"gim_bench_{run}")
            database_url = url.render_as_string(hide_password=False)
        else:
            database_url = f"sqlite+aiosqlite:///{folder / 'gim.db'}"
        embedded = None
        redis_url = options.redis
        if not redis_url:
            embedded = redis_client.EmbeddedRedis(folder / "redis", redis_client.free_port(), persist=False)
            await embedded.start()
            redis_url = embedded.url
        prefix = f"gimbench:{run}:"
        shards = MessageShards(options.shards)
        engine = None
        try:
            await db.ensure_database(database_url)
            engine = db.create_engine(database_url)
            await db.migrate(engine, shards)
            yield Storage(database_url, redis_url, prefix, shards, engine, folder, node_code=options.node_code)
        finally:
            if engine is not None:
                await engine.dispose()
            await db.drop_database(database_url)
            if embedded is not None:
                embedded.stop()
            elif redis_url:
                await _drop_prefix(redis_url, prefix)


@contextlib.asynccontextmanager
async def _target_storage(target: Target) -> AsyncIterator[Storage]:
    """The storage of running services: used as it is, nothing created or dropped."""
    engine = db.create_engine(target.database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="gim-bench-") as tmp:
            shards = MessageShards(target.shards)
            yield Storage(target.database_url, target.redis_url, target.redis_prefix, shards, engine, Path(tmp), target)
    finally:
        await engine.dispose()


async def _drop_prefix(url: str, prefix: str) -> None:
    client = redis_client.connect(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


class Deployment:
    """The nodes a scenario talks to (started here, or a `--target`), and the seeding and
    API helpers it needs. `pids`: the local processes by service, where they are known.
    `callers`: more connections to logic, for workers sharing its port (`caller`)."""

    def __init__(
        self,
        store: Storage,
        logic: str,
        business: str,
        connect: list[tuple[str, str]],
        pids: dict[str, list[int]],
        callers: int = 0,
    ) -> None:
        self.storage = store
        self.api = GimApi(logic, business, timeout=30)  # calls are balanced over a list of logic nodes
        self._callers = [GimApi(logic, business, timeout=30, own_connections=True) for _ in range(callers)]
        self._connect = list(dict.fromkeys(connect))  # (tcp, ws) listeners of each connect node (workers: one)
        self._pids = pids
        self.launcher: Launcher | None = None  # the nodes, when started here (kill, restart)

    def pids(self, service: str) -> list[int]:
        return self._pids.get(service, [])

    def caller(self, key: int) -> GimApi:
        """The API a sender (`key`: e.g. its device id) calls through: one of `callers`
        connections, each of which the kernel gave one logic worker, or else `api`."""
        return self._callers[key % len(self._callers)] if self._callers else self.api

    def endpoints(self, ws: bool = False, source: str = "") -> list[Endpoint]:
        """One endpoint per connect listener: its TCP one, or its WebSocket one."""
        out = []
        for tcp_addr, ws_addr in self._connect:
            addr = ws_addr if ws else tcp_addr
            host, port = addr.rsplit(":", 1)
            out.append(Endpoint(host, int(port), f"ws://{addr}/ws" if ws else "", source))
        return out

    async def seed(self, count: int) -> list[Device]:
        """`count` new users, one device each, each with a live token."""
        engine = self.storage.engine
        run = uuid.uuid4().hex[:6]
        phones = [f"b{run}{i:09d}" for i in range(count)]
        async with engine.begin() as conn:
            for i in range(0, count, SEED_CHUNK):
                chunk = phones[i : i + SEED_CHUNK]
                await conn.execute(user_table.insert().values([{"phone_number": p, "nickname": p[-6:]} for p in chunk]))
                await conn.execute(device_table.insert().values([{"type": 1, "brand": run} for _ in chunk]))
            query = sa.select(user_table.c.phone_number, user_table.c.id).where(
                user_table.c.phone_number.like(f"b{run}%")
            )
            by_phone = dict((await conn.execute(query)).all())
            device_ids = list(
                await conn.scalars(
                    sa.select(device_table.c.id).where(device_table.c.brand == run).order_by(device_table.c.id)
                )
            )
        users = [int(by_phone[p]) for p in phones]
        redis = redis_client.connect(self.storage.redis_url)
        tokens = TokenStore(engine, redis, self.storage.redis_prefix, ttl=3600)
        try:
            out: list[Device] = []
            for i in range(0, count, TOKEN_BATCH):
                pairs = list(zip(users[i : i + TOKEN_BATCH], device_ids[i : i + TOKEN_BATCH], strict=True))
                issued = await asyncio.gather(*(tokens.issue(u, d) for u, d in pairs))
                out.extend(Device(u, d, t) for (u, d), t in zip(pairs, issued, strict=True))
        finally:
            await redis.aclose()
        return out

    async def close(self) -> None:
        for api in [self.api, *self._callers]:
            await api.close()


def credentials(device: Device) -> Credentials:
    return Credentials(device.user_id, device.device_id, device.token)


@contextlib.asynccontextmanager
async def deployment(
    store: Storage, logic: int = 1, connect: int = 1, log_level: str = "warning", reuse_port: bool = False
) -> AsyncIterator[Deployment]:
    """`logic` and `connect` nodes (and business) started for the scenario, or the target;
    `reuse_port`: the nodes of each service are workers sharing its public ports."""
    if store.target is not None:
        target = store.target
        deployed = Deployment(store, target.logic, target.business, list(zip(target.tcp, target.ws, strict=True)), {})
        try:
            yield deployed
        finally:
            await deployed.close()
        return
    specs = local_nodes(
        database_url=store.database_url,
        redis_url=store.redis_url,
        redis_prefix=store.redis_prefix,
        logic=logic,
        connect=connect,
        dev_code=DEV_CODE,
        extra={"GIM_MESSAGE_SHARDS": str(store.shards.count), "GIM_LOG_LEVEL": log_level, **NO_RATE_LIMITS},
        reuse_port=reuse_port,
    )
    env = {**os.environ, "PYTHONPATH": store.node_code} if store.node_code else None
    async with Launcher(specs, log_dir=store.folder, env=env) as launcher:
        connects = [(node.addr("tcp"), node.addr("ws")) for node in launcher.of("connect")]
        pids = {
            service: [n.pid for n in launcher.of(service) if n.pid is not None]
            for service in ("business", "logic", "connect")
        }
        logic_ext = ",".join(dict.fromkeys(launcher.addrs("logic", "ext")))  # workers: one address
        callers = CALLERS_PER_WORKER * logic if reuse_port and logic > 1 else 0
        deployed = Deployment(store, logic_ext, launcher.addrs("business", "ext")[0], connects, pids, callers)
        deployed.launcher = launcher
        try:
            yield deployed
        except Exception:
            # the node logs live in a temporary folder: show what they said before it goes
            for node in launcher.nodes.values():
                progress(f"{node.name} (pid {node.pid}) log tail:\n{node.log_tail()}")
            raise
        finally:
            await deployed.close()


async def current_seqs(store: Storage, user_ids: list[int]) -> dict[int, int]:
    """Each user's highest seq so far (0 for none)."""
    from gim.pkg.schema import SEQ_OBJECT_USER
    from gim.pkg.schema import seq as seq_table

    query = sa.select(seq_table.c.object_id, seq_table.c.seq).where(
        seq_table.c.object_type == SEQ_OBJECT_USER, seq_table.c.object_id.in_(user_ids)
    )
    async with store.engine.connect() as conn:
        found = {int(u): int(s) for u, s in await conn.execute(query)}
    return {u: found.get(u, 0) for u in user_ids}
