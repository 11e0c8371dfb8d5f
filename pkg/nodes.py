"""Connect-node liveness in Redis: a node that dies without ServerStop stops counting.

Every connect node keeps the key `{prefix}node:{conn_addr}` alive, refreshing it every
`NODE_REFRESH` seconds with a time-to-live of `NODE_TTL`. Logic gives a node whose key is
gone one short try (`delivery.SUSPECT_TIMEOUT`) instead of the usual deadline and retry:
a dead host cannot hold sends up, and a live node whose key was lost (Redis restarted
empty) still gets its pushes until it announces itself again. Nothing is lost either
way: messages are stored first, and a client syncs when it reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gim.pkg import log

_log = log.get("nodes")

NODE_TTL = 15
NODE_REFRESH = 5.0
CHECK_CACHE_SECONDS = 1.0  # how long logic trusts one look at a node's key


def node_key(prefix: str, conn_addr: str) -> str:
    return f"{prefix}node:{conn_addr}"


async def announce(redis: aioredis.Redis, prefix: str, conn_addr: str) -> None:
    await redis.set(node_key(prefix, conn_addr), str(int(time.time())), ex=NODE_TTL)


def reaped_key(prefix: str, conn_addr: str) -> str:
    """Set by the logic node that declared `conn_addr` dead (see internal/logic/dead_nodes.py)."""
    return f"{prefix}node-reaped:{conn_addr}"


async def refresh(redis: aioredis.Redis, prefix: str, conn_addr: str) -> bool:
    """Keep the node's key alive; True if logic had declared this node dead meanwhile
    (it could not reach Redis for NODE_TTL and more): its devices were marked offline."""
    await announce(redis, prefix, conn_addr)
    return bool(await redis.delete(reaped_key(prefix, conn_addr)))


async def keep_alive(
    redis: aioredis.Redis, prefix: str, conn_addr: str, on_reaped: Callable[[], None] = lambda: None
) -> None:
    """Run for the life of a connect node (cancel it to stop; `leave` removes the key).
    `on_reaped`: called when logic had declared the node dead although it lives."""
    while True:
        await asyncio.sleep(NODE_REFRESH)
        try:
            if await refresh(redis, prefix, conn_addr):
                on_reaped()
        except RedisError as exc:
            _log.warning("node_keep_alive_failed", conn_addr=conn_addr, error=str(exc))


async def leave(redis: aioredis.Redis, prefix: str, conn_addr: str) -> None:
    await redis.delete(node_key(prefix, conn_addr))


class NodeLiveness:
    """Logic's view of which connect nodes are alive.

    A node seen alive is trusted for a second (a push to a node that died meanwhile just
    fails fast); a node seen dead is looked up again every time, so one that comes back
    gets its pushes at once.
    """

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._alive_until: dict[str, float] = {}
        self._dead: set[str] = set()  # logged once each
        self._failures = log.Summary(_log)

    async def suspects(self, conn_addrs: set[str]) -> set[str]:
        """The nodes among `conn_addrs` that show no sign of life. If Redis cannot say,
        none: a push to a node that is really gone fails on its own."""
        try:
            return conn_addrs - await self.alive(conn_addrs)
        except RedisError as exc:
            self._failures.warning("node_liveness_unknown", kind=type(exc).__name__, error=str(exc))
            return set()

    async def is_alive(self, conn_addr: str) -> bool:
        """Whether one node shows signs of life (True if Redis cannot say)."""
        return conn_addr not in await self.suspects({conn_addr})

    async def alive(self, conn_addrs: Iterable[str]) -> set[str]:
        now = time.monotonic()
        addrs = set(conn_addrs)
        unknown = [a for a in addrs if self._alive_until.get(a, 0.0) < now]
        if unknown:
            values = await self._redis.mget([node_key(self._prefix, a) for a in unknown])
            for addr, value in zip(unknown, values, strict=True):
                if value is not None:
                    self._alive_until[addr] = now + CHECK_CACHE_SECONDS
                    self._dead.discard(addr)
                elif addr not in self._dead:
                    self._dead.add(addr)
                    _log.warning("node_not_alive", conn_addr=addr)
        return {a for a in addrs if self._alive_until.get(a, 0.0) >= now}
