"""Standard gRPC health checking (grpc.health.v1.Health) on every gRPC server of a node,
and the client side `gim health` uses.

Each server answers for the services it carries (`pb.LogicExt`, `pb.LogicInt`, ...) and
for "" (the node as a whole). All are SERVING once the node has started, and NOT_SERVING

- while a dependency the node cannot work without is down: `probe` (the database for
  logic and business, Redis for connect) is run every `PROBE_INTERVAL` seconds and a
  failure or a probe slower than `PROBE_TIMEOUT` turns every service NOT_SERVING until
  a probe passes again;
- from the moment the node starts stopping: it keeps answering calls for
  `drain_seconds` (time for load balancers and Kubernetes to take it out of rotation),
  then stops its servers gracefully.

One more name, `liveness`, says only that the process answers: SERVING from the start
until the node stops, whatever its dependencies do (a liveness probe must not restart a
node because the database is down; readiness takes it out of rotation instead).

The health service needs no internal secret on a private port (`security.OPEN_PREFIX`):
it tells nothing but "serving or not".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import text

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import AsyncEngine

from gim.pkg import log

_log = log.get("health")

PROBE_INTERVAL = 5.0  # seconds between dependency probes
PROBE_TIMEOUT = 3.0  # a probe slower than this counts as failed
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = "liveness"  # SERVING while the process answers, dependencies or not
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name  # grpc.health.v1.Health

Probe = Callable[[], Awaitable[object]]


class NodeHealth:
    """The health of one node, shared by all of its gRPC servers."""

    def __init__(
        self, probe: Probe | None = None, drain_seconds: float = 0.0, interval: float = PROBE_INTERVAL
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self.probe = probe
        self.drain_seconds = drain_seconds
        self.interval = interval
        self.services: set[str] = {""}
        self.healthy: bool | None = None  # None: not started
        self.draining = False
        self._probing: asyncio.Task[None] | None = None

    def serve(self, server: aio.Server, services: Iterable[str], *, reflect: bool = False) -> None:
        """Answer health checks on `server` for `services` (and ""); with `reflect`, also
        server reflection listing them (for grpcurl)."""
        names = list(services)
        self.services.update(names)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        if reflect:
            reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)

    async def start(self) -> None:
        """Every service NOT_SERVING until the first probe passes (SERVING at once without a
        probe); then probe every PROBE_INTERVAL seconds."""
        await self.servicer.set(LIVENESS, SERVING)
        await self._set(self.probe is None or await self._probe_passes())
        if self.probe is not None:
            self._probing = asyncio.get_running_loop().create_task(self._probe_forever())

    async def drain(self) -> None:
        """NOT_SERVING for good, then `drain_seconds` during which the node still serves."""
        await self._stop_probing()
        if not self.draining:
            self.draining = True
            _log.info("draining", seconds=self.drain_seconds)
            await self.servicer.enter_graceful_shutdown()
            if self.drain_seconds > 0:
                await asyncio.sleep(self.drain_seconds)

    async def _stop_probing(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
            self._probing = None

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._set(await self._probe_passes())

    async def _probe_passes(self) -> bool:
        assert self.probe is not None
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.probe()
        except Exception as exc:
            if self.healthy is not False:  # logged when it goes down, not at every probe
                _log.warning("dependency_down", status="NOT_SERVING", error=f"{type(exc).__name__}: {exc}"[:300])
            return False
        return True

    async def _set(self, healthy: bool) -> None:
        if healthy and self.healthy is False:
            _log.info("dependency_back", status="SERVING")
        self.healthy = healthy
        for service in sorted(self.services):
            await self.servicer.set(service, SERVING if healthy else NOT_SERVING)


def database_probe(engine: AsyncEngine) -> Probe:
    """A probe that passes when the database answers `SELECT 1`."""

    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return probe


def redis_probe(redis: aioredis.Redis) -> Probe:
    """A probe that passes when Redis answers PING."""

    async def probe() -> None:
        await redis.ping()

    return probe


# -- the client side ------------------------------------------------------------------------


async def check(channel: aio.Channel, service: str = "", timeout: float = 3.0) -> str:
    """The status name a server reports for `service` ("SERVING", "NOT_SERVING",
    "SERVICE_UNKNOWN" when it does not know the service); raises `aio.AioRpcError` when
    the call fails (nothing answers, no health service)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return "SERVICE_UNKNOWN"
        raise
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


async def check_addr(addr: str, service: str = "", timeout: float = 3.0) -> str:
    """`check` over a new plaintext channel to `addr` (host:port); a failed call is
    reported as "UNREACHABLE (<code>)"."""
    from gim.pkg import rpc

    channel = rpc.channel(addr, private=True)
    try:
        return await check(channel, service, timeout)
    except aio.AioRpcError as exc:
        return f"UNREACHABLE ({exc.code().name})"
    finally:
        await channel.close()
