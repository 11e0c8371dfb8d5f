"""Standard gRPC health checking: every server of every node answers for its services and
for "" (the node); NOT_SERVING while a node drains and while its dependency is down;
`gim health` speaks the protocol."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from gim.cmd.gim import main as gim_main
from gim.internal.business.server import BusinessServer
from gim.pkg import health, redis_client
from gim.pkg.config import BusinessConfig


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


async def until(addr: str, wanted: str, service: str = "", timeout: float = 10.0) -> None:
    """Poll `addr`'s health (bounded) until it reports `wanted`."""
    status = ""
    async with asyncio.timeout(timeout):
        while (status := await health.check_addr(addr, service, timeout=2.0)) != wanted:
            await asyncio.sleep(0.05)
    assert status == wanted


async def test_every_server_reports_serving_per_service(cluster: Any) -> None:
    servers = {
        _addr(cluster.business.int_port): ["pb.UserInt", "pb.BusinessInt"],
        _addr(cluster.business.ext_port): ["pb.UserExt", "pb.BusinessExt"],
        _addr(cluster.logic.int_port): ["pb.LogicInt", "pb.LogicAdmin"],
        _addr(cluster.logic.ext_port): ["pb.LogicExt"],
        _addr(cluster.connect.int_port): ["pb.ConnectInt"],
    }
    for addr, services in servers.items():
        # an earlier test on this shared cluster may have had its Redis or database away for
        # a moment: the node says SERVING again at its next dependency check (every 5 s)
        await until(addr, "SERVING", timeout=20.0)
        for service in ["", health.LIVENESS, *services]:
            assert await health.check_addr(addr, service) == "SERVING", (addr, service)
        assert await health.check_addr(addr, "pb.NoSuchService") == "SERVICE_UNKNOWN", addr
    tcp = ["--tcp", _addr(cluster.connect.tcp_port), _addr(cluster.connect.ws_port)]
    await asyncio.to_thread(gim_main, ["health", *servers, *tcp])  # returns: exit code 0
    await asyncio.to_thread(gim_main, ["health", "--service", "pb.LogicExt", _addr(cluster.logic.ext_port)])
    with pytest.raises(SystemExit, match="not serving: .* SERVICE_UNKNOWN"):
        await asyncio.to_thread(gim_main, ["health", "--service", "pb.LogicExt", _addr(cluster.business.ext_port)])
    with pytest.raises(SystemExit, match="not listening"):
        await asyncio.to_thread(gim_main, ["health", f"127.0.0.1:{redis_client.free_port()}"])


async def test_a_draining_node_reports_not_serving_while_it_still_answers(tmp_path: Path) -> None:
    cfg = BusinessConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",  # the probe's SELECT 1 needs no tables
        redis_url=f"redis://127.0.0.1:{redis_client.free_port()}/0",  # a cache: not needed to serve health
        int_listen="127.0.0.1:0",
        ext_listen="127.0.0.1:0",
        drain_seconds=4.0,  # room for the checks below on a loaded machine
    )
    server = BusinessServer.from_config(cfg)
    await server.start()
    addr = _addr(server.int_port)
    assert await health.check_addr(addr) == "SERVING"
    stopping = asyncio.get_running_loop().create_task(server.stop(1.0))
    try:
        await until(addr, "NOT_SERVING")
        assert await health.check_addr(_addr(server.ext_port), "pb.UserExt") == "NOT_SERVING"
        assert await health.check_addr(addr, health.LIVENESS) == "NOT_SERVING"
        with pytest.raises(SystemExit, match="not serving: .* NOT_SERVING"):
            await asyncio.to_thread(gim_main, ["health", addr])
        assert not stopping.done(), "the node still serves during its drain"
    finally:
        await stopping
    assert (await health.check_addr(addr)).startswith("UNREACHABLE")


async def test_not_serving_while_the_dependency_is_down(tmp_path: Path) -> None:
    """A node whose Redis goes away (connect's dependency; here a real redis-server that
    is stopped and started again) reports NOT_SERVING, and SERVING once it is back;
    liveness stays SERVING throughout."""
    port = redis_client.free_port()
    redis_server = redis_client.EmbeddedRedis(tmp_path / "redis", port, persist=False)
    await redis_server.start()
    client = redis_client.connect(redis_server.url)
    node = health.NodeHealth(health.redis_probe(client), interval=0.1)
    server = aio.server()
    node.serve(server, ["pb.ConnectInt"])
    addr = _addr(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    try:
        await node.start()
        assert await health.check_addr(addr, "pb.ConnectInt") == "SERVING"
        redis_server.stop()
        await until(addr, "NOT_SERVING", "pb.ConnectInt")
        assert await health.check_addr(addr, health.LIVENESS) == "SERVING"
        await redis_server.start()
        await until(addr, "SERVING", "pb.ConnectInt")
    finally:
        await node.drain()
        await server.stop(0)
        await client.aclose()
        redis_server.stop()
