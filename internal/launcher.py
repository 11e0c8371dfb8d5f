"""A local deployment: business, logic and connect nodes as child processes.

    specs = local_nodes(database_url=db, redis_url=redis, logic=2, connect=2, dev_code="0000")
    async with Launcher(specs, log_dir=tmp) as cluster:
        cluster.addr("connect-1", "tcp")           # '127.0.0.1:41234'
        await cluster.kill("connect-1")            # SIGKILL, by PID
        await cluster.restart("connect-1")         # same ports, same environment

Each node runs `python -P -m gim.cmd.<service>` in its own session (so a Ctrl-C reaches
only the parent), configured by environment variables (`GIM_<SERVICE>_<KEY>`). It is
told this process's PID (`--parent-pid`: it receives SIGTERM when this process ends,
however it ends, so no node outlives its launcher) and a pipe (`--ready-fd`): a node
counts as started when it writes `ready` and its bound ports there, which it does only
once every listener of its own is serving (a port someone else listens on does not make
a node ready). `gim run` and the multi-node tests both start their nodes here.

The nodes die with the thread that started them (PR_SET_PDEATHSIG): use a Launcher from
the main thread, or from a thread that outlives the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from gim.pkg import config, log
from gim.pkg.redis_client import free_port
from gim.pkg.service import SHUTDOWN_LIMIT

_log = log.get("launcher")

SERVICES = ("business", "logic", "connect")  # start order; stopped in reverse
# A node ends by itself within SHUTDOWN_LIMIT of SIGTERM (logging what was still pending
# if its graceful stop overran); the launcher kills it only if it has not, a little later.
STOP_TIMEOUT = SHUTDOWN_LIMIT + 5.0
LISTENERS = {"business": ("int", "ext"), "logic": ("int", "ext"), "connect": ("int", "tcp", "ws")}


class LaunchError(RuntimeError):
    """A node exited or did not listen in time."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node: its `listen` addresses (listener name -> host:port, what it binds) and the
    environment it gets on top of the launcher's."""

    name: str
    service: str
    listen: Mapping[str, str]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def addr(self, listener: str) -> str:
        """Where to reach `listener` from this machine (a wildcard bind -> loopback)."""
        host, port = config.split_host_port(self.listen[listener], listener)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Node:
    """A running (or stopped) node process."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log_path: Path | None = None
        self.ports: dict[str, int] = {}  # listener -> port, as the node reported when ready
        self._ready: asyncio.StreamReader | None = None
        self._ready_pipe: asyncio.ReadTransport | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def addr(self, listener: str) -> str:
        return self.spec.addr(listener)

    async def spawn(self, env: Mapping[str, str], log_dir: Path | None, python: str) -> None:
        output: IO[bytes] | None = None
        if log_dir is not None:
            self.log_path = log_dir / f"{self.name}.log"
            output = self.log_path.open("ab")
        self._close_ready_pipe()
        ready_read, ready_write = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                python, "-P", "-m", f"gim.cmd.{self.spec.service}",
                "--parent-pid", str(os.getpid()), "--ready-fd", str(ready_write),
                env={**env, **self.spec.env}, stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=output, start_new_session=True, pass_fds=(ready_write,),
            )  # fmt: skip
            ready = self._ready = asyncio.StreamReader()
            self._ready_pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(ready), os.fdopen(ready_read, "rb", 0)
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)  # the child has its own copy: EOF when it exits
            if output is not None:
                output.close()
        self.starts += 1
        self.ports = {}
        _log.debug("node_spawned", node=self.name, pid=self.process.pid)

    async def wait_ready(self) -> None:
        """Until the node reports that its listeners are serving, with the ports the spec
        says; LaunchError if it exits (or closes the pipe) first."""
        assert self._ready is not None, "spawn() first"
        line = await self._ready.readline()
        self._close_ready_pipe()
        if not line.startswith(b"ready "):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):  # it closed the pipe: it is exiting
                    await self.process.wait()  # type: ignore[union-attr]  # spawn() set it
            what = f"exited with code {self.returncode}" if not self.running else "closed its readiness pipe"
            raise LaunchError(f"{self.name} (pid {self.pid}) {what}{self._tail_text()}")
        self.ports = {str(k): int(v) for k, v in json.loads(line[6:]).items()}
        for listener in LISTENERS[self.spec.service]:
            wanted = config.split_host_port(self.spec.listen[listener], listener)[1]
            if wanted and self.ports.get(listener) != wanted:
                raise LaunchError(f"{self.name} listens for {listener} on {self.ports.get(listener)}, not {wanted}")
        _log.info("node_ready", node=self.name, pid=self.pid, ports=self.ports)

    def _close_ready_pipe(self) -> None:
        if self._ready_pipe is not None:
            self._ready_pipe.close()
            self._ready_pipe = None

    def _tail_text(self) -> str:
        tail = self.log_tail()
        return f"; the last lines of {self.log_path}:\n{tail}" if tail else ""

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    async def signal(self, sig: int, timeout: float) -> int | None:
        """Send `sig` by PID and wait (bounded) for the exit; returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            async with asyncio.timeout(timeout):
                await self.process.wait()
        return self.process.returncode

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        try:
            return await self.signal(signal.SIGTERM, timeout)
        except TimeoutError:
            _log.warning("node_killed", node=self.name, pid=self.pid)
            return await self.signal(signal.SIGKILL, timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` of the node's log file ("" when it logs elsewhere)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Launcher:
    """Starts, kills, restarts and stops a set of nodes (see the module docstring).

    `env`: the environment every node starts from (default: this process's); `log_dir`:
    each node's stdout and stderr go to `<log_dir>/<name>.log` (default: inherited).
    """

    def __init__(
        self,
        specs: Iterable[NodeSpec],
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.nodes = {spec.name: Node(spec) for spec in sorted(specs, key=lambda s: SERVICES.index(s.service))}
        self.env = dict(os.environ if env is None else env)
        self.log_dir = log_dir
        self.python = python

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def of(self, service: str) -> list[Node]:
        return [node for node in self.nodes.values() if node.spec.service == service]

    def addr(self, name: str, listener: str) -> str:
        return self.nodes[name].addr(listener)

    def addrs(self, service: str, listener: str) -> list[str]:
        """`listener` of every node of `service`, e.g. addrs("connect", "tcp")."""
        return [node.addr(listener) for node in self.of(service)]

    async def start(self, timeout: float = 60.0) -> None:
        """Spawn every node, then wait until all listen; on failure stop what started."""
        try:
            for node in self.nodes.values():
                await node.spawn(self.env, self.log_dir, self.python)
            async with asyncio.timeout(timeout):
                for node in self.nodes.values():
                    await node.wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Send `sig` (default SIGKILL) to one node and wait for it to exit."""
        return await self.nodes[name].signal(sig, timeout)

    async def terminate(self, name: str, timeout: float = 30.0) -> int | None:
        return await self.nodes[name].stop(timeout)

    async def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop the node if it runs (SIGTERM), start it again, wait until it listens."""
        node = self.nodes[name]
        await node.stop(timeout)
        await node.spawn(self.env, self.log_dir, self.python)
        async with asyncio.timeout(timeout):
            await node.wait_ready()

    async def health(self, name: str, service: str = "", timeout: float = 3.0) -> str:
        """What the node's private gRPC port answers to a standard health check of
        `service` ("" = the node): "SERVING", "NOT_SERVING", or "UNREACHABLE (...)"."""
        from gim.pkg.health import check_addr

        return await check_addr(self.nodes[name].addr("int"), service, timeout)

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running node's health check says SERVING (its dependencies answer)."""
        async with asyncio.timeout(timeout):
            for node in self.nodes.values():
                while node.running:
                    if await self.health(node.name) == "SERVING":
                        break
                    await asyncio.sleep(0.1)  # a health change has no event to wait on: poll, bounded

    async def exited(self) -> Node:
        """Wait until some running node exits on its own; returns it."""
        waits = {
            asyncio.ensure_future(node.process.wait()): node
            for node in self.nodes.values()
            if node.process is not None and node.running
        }
        if not waits:
            raise LaunchError("no node is running")
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM connect nodes, then logic, then business (each group together);
        whatever does not exit within `timeout` is killed."""
        for service in reversed(SERVICES):
            await asyncio.gather(*(node.stop(timeout) for node in self.of(service)))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def service_env(service: str, values: Mapping[str, object]) -> dict[str, str]:
    """Config keys as the environment variables one service reads: {"int_listen": ..} ->
    {"GIM_LOGIC_INT_LISTEN": ..}. Service-specific names win over any shared `GIM_<KEY>`."""
    return {f"GIM_{service.upper()}_{key.upper()}": str(value) for key, value in values.items()}


def local_nodes(
    *,
    database_url: str,
    redis_url: str,
    redis_prefix: str = "gim:",
    logic: int = 1,
    connect: int = 1,
    dev_code: str = "",
    host: str = "127.0.0.1",
    extra: Mapping[str, str] | None = None,
    reuse_port: bool = False,
) -> list[NodeSpec]:
    """business, `logic` logic nodes and `connect` connect nodes on free ports of `host`.

    Logic and business get each other's internal addresses as peer lists; every connect
    node gets the logic list and advertises its own ConnectInt address as `conn_addr`.
    `extra`: more environment for every node (e.g. GIM_MESSAGE_SHARDS, GIM_LOG_LEVEL).
    `reuse_port`: the nodes of a service are workers, as `--workers` starts them: every
    logic node listens on one shared `ext` port, every connect node on one shared `tcp`
    and one `ws` port (SO_REUSEPORT), each on a private `int` port of its own.
    """

    def ports(*names: str) -> dict[str, str]:
        return {name: f"{host}:{free_port(host)}" for name in names}

    def nodes(count: int, public: tuple[str, ...]) -> list[dict[str, str]]:
        shared = ports(*public) if reuse_port else {}
        return [{**ports("int"), **(shared or ports(*public))} for _ in range(count)]

    business = ports("int", "ext")
    logics = nodes(logic, ("ext",))
    connects = nodes(connect, ("tcp", "ws"))
    logic_peers = ",".join(listen["int"] for listen in logics)
    storage = {"database_url": database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    common = dict(extra or {})
    workers: dict[str, object] = {"reuse_port": True} if reuse_port else {}

    def spec(name: str, service: str, listen: dict[str, str], **keys: object) -> NodeSpec:
        listen_keys = {f"{listener}_listen": addr for listener, addr in listen.items()}
        listen_keys["metrics_listen"] = f"{host}:0"  # each node its own; Node.ports["metrics"] says which
        return NodeSpec(name, service, listen, {**common, **service_env(service, {**listen_keys, **keys})})

    specs = [spec("business", "business", business, **storage, logic_int_addr=logic_peers, dev_code=dev_code)]
    specs += [
        spec(f"logic-{i}", "logic", listen, **storage, **workers, business_int_addr=business["int"])
        for i, listen in enumerate(logics, 1)
    ]
    specs += [
        spec(
            f"connect-{i}",
            "connect",
            listen,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            logic_int_addr=logic_peers,
            conn_addr=listen["int"],
            **workers,
        )  # fmt: skip
        for i, listen in enumerate(connects, 1)
    ]
    return specs
