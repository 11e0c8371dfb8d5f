"""A connect node as a child process, through gim's own launcher."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from gim.internal.launcher import Node, NodeSpec
from gim.pkg import redis_client
from gimtest.cluster import Cluster, addr


class ConnectProcess:
    """`gim-connect` as a child process on fixed ports, in front of the cluster's logic,
    started and stopped through gim's own launcher (`gim.internal.launcher.Node`):
    `start()` waits until it reports its listeners ready, `kill(sig)` ends it (by PID),
    `start()` again brings it back on the same ports."""

    def __init__(self, cluster: Cluster, log_dir: Path) -> None:
        self.ports = {name: redis_client.free_port() for name in ("tcp", "ws", "int")}
        listen = {name: addr(port) for name, port in self.ports.items()}
        env = {
            "GIM_CONFIG_DIR": str(log_dir),  # no YAML there: defaults plus the variables below
            **{f"GIM_CONNECT_{name.upper()}_LISTEN": where for name, where in listen.items()},
            "GIM_CONNECT_METRICS_LISTEN": "127.0.0.1:0",
            "GIM_CONNECT_LOGIC_INT_ADDR": addr(cluster.logic.int_port),
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


# Every listener of a `gim run`, by the names the tests use for them.
RUN_LISTENERS = ("tcp", "ws", "c_int", "l_int", "l_ext", "b_int", "b_ext", "http", "http_int")


def gim_run_env(
    addr: Mapping[str, str], database_url: str, redis_url: str, log_level: str = "warning", **extra: str
) -> dict[str, str]:
    """The environment of a `gim run` that binds the addresses of `addr` (one per name of
    `RUN_LISTENERS`, never the default ports) and free metrics ports, on the given storage;
    `extra`: more variables."""
    return dict(
        os.environ,
        GIM_DATABASE_URL=database_url,
        GIM_REDIS_URL=redis_url,
        GIM_CONNECT_TCP_LISTEN=addr["tcp"],
        GIM_CONNECT_WS_LISTEN=addr["ws"],
        GIM_CONNECT_INT_LISTEN=addr["c_int"],
        GIM_LOGIC_INT_LISTEN=addr["l_int"],
        GIM_LOGIC_EXT_LISTEN=addr["l_ext"],
        GIM_BUSINESS_INT_LISTEN=addr["b_int"],
        GIM_BUSINESS_EXT_LISTEN=addr["b_ext"],
        GIM_LOGIC_INT_ADDR=addr["l_int"],
        GIM_BUSINESS_INT_ADDR=addr["b_int"],
        GIM_LOGIC_HTTP_LISTEN=addr["http"],
        GIM_LOGIC_HTTP_INT_LISTEN=addr["http_int"],
        GIM_METRICS_LISTEN="127.0.0.1:0",
        GIM_LOG_LEVEL=log_level,
        **extra,
    )
