"""The faults `gim bench chaos` injects, each by PID or by an admin connection.

- `connect_kill`: SIGKILL a connect node, start it again on its ports (until ready);
- `logic_kill`: the same for a logic node;
- `redis_kill`: SIGKILL the bench's own redis-server, start it again `REDIS_DOWN`
  seconds later on its append-only file;
- `redis_flush`: FLUSHALL (Redis comes back empty while everything runs);
- `mysql_kill`: `KILL` every session of the bench database, from a separate admin
  connection (MySQL only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from gim.bench.chaos_verdict import FaultRun
from gim.internal.launcher import Launcher
from gim.pkg import db, redis_client

FAULTS = ("connect_kill", "logic_kill", "redis_kill", "redis_flush", "mysql_kill")
REDIS_DOWN = 2.0  # seconds between killing Redis and starting it again (as in issue 11)
KILLED = -signal.SIGKILL  # the exit status of a node killed by SIGKILL


class KillableRedis(redis_client.EmbeddedRedis):
    """The embedded redis-server with its append-only file, which can also be SIGKILLed."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def kill(self) -> int | None:
        """SIGKILL by PID; its exit status."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.kill()
        return self._process.wait(10)


@dataclasses.dataclass
class Injector:
    launcher: Launcher
    redis: KillableRedis
    database_url: str

    def by_name(self, name: str) -> Callable[[], Awaitable[FaultRun]]:
        return {
            "connect_kill": lambda: self.node_kill("connect_kill", "connect-1"),
            "logic_kill": lambda: self.node_kill("logic_kill", "logic-1"),
            "redis_kill": self.redis_kill,
            "redis_flush": self.redis_flush,
            "mysql_kill": self.mysql_kill,
        }[name]

    async def node_kill(self, fault: str, node: str) -> FaultRun:
        at = time.monotonic()
        code = await self.launcher.kill(node)
        detail = f"{node} exit {code}"
        try:
            await self.launcher.restart(node)
            clean = code == KILLED
            detail += f", ready again after {time.monotonic() - at:.1f} s (pid {self.launcher[node].pid})"
        except Exception as exc:
            clean = False
            detail += f", restart failed: {exc}"
        return FaultRun(fault, at, time.monotonic(), detail, clean)

    async def redis_kill(self) -> FaultRun:
        at = time.monotonic()
        code = self.redis.kill()
        await asyncio.sleep(REDIS_DOWN)
        try:
            await self.redis.start(timeout=60)
            clean = code == KILLED
            detail = f"redis exit {code}, ready again on its AOF after {time.monotonic() - at:.1f} s"
        except Exception as exc:
            clean = False
            detail = f"redis exit {code}, restart failed: {exc}"
        return FaultRun("redis_kill", at, time.monotonic(), detail, clean)

    async def redis_flush(self) -> FaultRun:
        at = time.monotonic()
        client = redis_client.connect(self.redis.url)
        try:
            keys = await client.dbsize()
            await client.flushall()
        finally:
            await client.aclose()
        return FaultRun("redis_flush", at, time.monotonic(), f"{keys} keys flushed", True)

    async def mysql_kill(self) -> FaultRun:
        at = time.monotonic()
        killed = await kill_sessions(self.database_url)
        detail = "skipped (not MySQL)" if killed is None else f"{killed} sessions killed"
        return FaultRun("mysql_kill", at, time.monotonic(), detail, True)


async def kill_sessions(database_url: str) -> int | None:
    """KILL every session using the database of `database_url` (None: not MySQL)."""
    url = db.normalize_url(database_url)
    if url.get_backend_name() != "mysql":
        return None
    admin = create_async_engine(make_url(url)._replace(database=None), poolclass=NullPool)
    killed = 0
    try:
        async with admin.connect() as conn:
            ids = await conn.scalars(
                sa.text("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db AND ID <> CONNECTION_ID()"),
                {"db": url.database},
            )
            for session in list(ids):
                with contextlib.suppress(sa.exc.DBAPIError):  # gone meanwhile
                    await conn.execute(sa.text(f"KILL {int(session)}"))
                    killed += 1
    finally:
        await admin.dispose()
    return killed
