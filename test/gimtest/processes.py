"""A connect node as a child process, through gim's own launcher."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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
