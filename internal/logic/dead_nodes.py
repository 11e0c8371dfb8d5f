"""Connect nodes that died without saying so (SIGKILL, a lost host) are cleaned up.

A connect node that stops says `ServerStop`, and its devices go offline. One that dies
leaves them "online" at an address nobody answers, and every send to them would pay a
suspect try. Every logic node sweeps every NODE_REFRESH seconds: a node that still has
online devices but whose liveness key (pkg/nodes.py) has been gone for NODE_TTL seconds
in a row, as this logic node saw it, is dead. Then:

- its delivery lane and channel are dropped here (on every logic node);
- one logic node (a Redis lock) marks its devices offline, once, and leaves a mark that
  the node, should it be alive after all (it could not reach Redis all that time), finds
  when it next refreshes its key: it then closes its connections so that its clients
  sign in again (see connect's server).

An empty Redis (restarted, flushed) loses every node's key for up to NODE_REFRESH
seconds, well under NODE_TTL: no live node is reaped for that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from gim.internal.logic.devices import DeviceStore
from gim.internal.logic.ports import Delivery
from gim.pkg import log, nodes

_log = log.get("dead_nodes")

REAP_LOCK_SECONDS = 60  # one logic node reaps a node; others skip it this long
REAPED_MARK_SECONDS = 24 * 3600  # how long the mark waits for a node that comes back


class DeadNodes:
    """The sweep that finds and cleans up dead connect nodes (see the module docstring)."""

    def __init__(
        self,
        devices: DeviceStore,
        redis: aioredis.Redis,
        prefix: str,
        deliverer: Delivery,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._devices = devices
        self._redis = redis
        self._prefix = prefix
        self._deliverer = deliverer
        self._clock = clock
        self._missing_since: dict[str, float] = {}
        self._failures = log.Summary(_log, interval=60.0)

    async def run(self) -> None:
        """Sweep for the life of the logic node (cancel to stop)."""
        while True:
            await asyncio.sleep(nodes.NODE_REFRESH)
            try:
                await self.sweep()
            except Exception as exc:
                self._failures.warning("reap_sweep_failed", kind=type(exc).__name__, error=str(exc))

    async def sweep(self) -> list[str]:
        """One look at the nodes that hold online devices; returns the ones reaped here."""
        addrs = await self._devices.online_nodes()
        for gone in set(self._missing_since) - set(addrs):
            del self._missing_since[gone]
        if not addrs:
            return []
        now = self._clock()
        keys = await self._redis.mget([nodes.node_key(self._prefix, a) for a in addrs])
        reaped: list[str] = []
        for addr, key in zip(addrs, keys, strict=True):
            if key is not None:
                self._missing_since.pop(addr, None)
                continue
            since = self._missing_since.setdefault(addr, now)
            if now - since < nodes.NODE_TTL:
                continue
            del self._missing_since[addr]
            await self._deliverer.forget(addr)
            if await self._reap(addr):
                reaped.append(addr)
        return reaped

    async def _reap(self, addr: str) -> bool:
        lock = f"{self._prefix}node-reaping:{addr}"
        if not await self._redis.set(lock, "1", nx=True, ex=REAP_LOCK_SECONDS):
            return False  # another logic node does it
        await self._redis.set(nodes.reaped_key(self._prefix, addr), "1", ex=REAPED_MARK_SECONDS)
        count = await self._devices.node_stopped(addr)
        _log.warning(
            "node_reaped", conn_addr=addr, devices_offline=count, reason="no liveness key", seconds=nodes.NODE_TTL
        )
        return True
