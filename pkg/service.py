"""Running a service process: signals, raised descriptor limit, readiness, a graceful
stop with a hard bound, and no life after the launcher that started it.

- Before building anything the service checks that its listen addresses are free
  (`pkg.ports`): a port in use is one line naming the address, the setting and the
  process that holds it, and exit code 1.
- SIGINT, SIGTERM and SIGHUP stop it gracefully; whatever happens, it has exited
  `SHUTDOWN_LIMIT` seconds after the first signal (past that it logs the tasks still
  pending and leaves with `os._exit`: a task that ignores cancellation cannot keep it
  alive). A second signal ends it at once.
- `--parent-pid PID` (given by the launcher): the service receives SIGTERM when that
  process ends, however it ends (`pkg.parent_death`).
- `--ready-fd FD` (given by the launcher): once every listener is bound and serving, the
  service writes `ready {"int": 50000, ...}` (its bound ports) and a newline there and
  closes it; a launcher waits for that line, not for "someone accepts on the port".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import resource
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from gim.pkg import config, log, metrics, parent_death, ports, rpc, security
from gim.pkg.config import BaseConfig, C

_log = log.get("service")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# seconds from the first stop signal to the end of the process, whatever is still running:
# above every graceful stop's own bounds (gRPC grace 5 s, a call to a peer `rpc_timeout`)
SHUTDOWN_LIMIT = 15.0
CLEANUP_LIMIT = 5.0  # seconds to release what a start that failed half-way had opened
LISTENERS = ("int", "ext", "tcp", "ws", "http", "http_int")  # `<name>_listen` settings, `<name>_port` attributes
# the public listeners that workers share (`reuse_port`); `int` is always each process's own
SHARED_LISTENERS = ("ext", "tcp", "ws", "http", "http_int")


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class _Deadline:
    """Ends the process `limit` seconds after `arm()`, from a thread of its own (so also
    when the event loop is stuck), logging what was still pending."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: threading.Timer | None = None

    def arm(self, why: str) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.limit, self._expire, args=(why,))
            self._timer.daemon = True
            self._timer.start()

    def _expire(self, why: str) -> None:
        pending: list[str] = []
        with contextlib.suppress(Exception):  # read from another thread: best effort
            if self.loop is not None:
                pending = sorted(_describe(task) for task in asyncio.all_tasks(self.loop))
        _log.error("shutdown_overran", why=why, limit=self.limit, pending=pending[:20], more=max(0, len(pending) - 20))
        os._exit(1)


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    where = getattr(coro, "cr_code", None)
    return f"{task.get_name()} {getattr(coro, '__qualname__', coro)}" + (
        f" ({where.co_filename.rsplit('/', 1)[-1]}:{where.co_firstlineno})" if where is not None else ""
    )


def run(main: Callable[[asyncio.Event], Awaitable[None]], shutdown_limit: float = SHUTDOWN_LIMIT) -> None:
    """Run `main(stop)` on a new event loop; SIGINT/SIGTERM/SIGHUP set `stop` and start the
    hard deadline; a second one exits at once."""
    deadline = _Deadline(shutdown_limit)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline.loop = loop

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                _log.warning("stop_forced", signal=sig.name)
                os._exit(1)
            _log.info("stop_requested", signal=sig.name)
            stop.set()
            deadline.arm(f"stopping after {sig.name}")

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await main(stop)
        finally:
            deadline.arm("exiting")  # asyncio.run still cancels and awaits what is left

    asyncio.run(runner())


class Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace: float = 5.0) -> None: ...


@dataclasses.dataclass(frozen=True)
class Launch:
    """What a launcher asked for on the command line (see the module docstring)."""

    parent_pid: int | None = None
    ready_fd: int | None = None


def check_listeners(name: str, cfg: BaseConfig) -> None:
    """Every `*_listen` address of `cfg` can be bound; else `ports.PortTaken`. With
    `reuse_port` the shared ones are not checked: a sibling worker may hold them already
    (whoever starts the workers checks them first)."""
    shared = SHARED_LISTENERS if getattr(cfg, "reuse_port", False) else ()
    for listener in LISTENERS:
        addr = getattr(cfg, f"{listener}_listen", None)
        if addr and listener not in shared:
            host, port = config.split_host_port(addr, f"{listener}_listen")
            ports.check_free(host, port, f"{name} {listener}_listen")


def bound_ports(server: object) -> dict[str, int]:
    return {name: port for name in LISTENERS if isinstance(port := getattr(server, f"{name}_port", None), int)}


def serve(
    name: str,
    config: BaseConfig,
    build: Callable[[], Server],
    launch: Launch = Launch(),
    shutdown_limit: float = SHUTDOWN_LIMIT,
) -> None:
    """Set up logging, build the server, run it until SIGINT/SIGTERM/SIGHUP, stop it
    gracefully (within `shutdown_limit`)."""
    log.setup(config.log_level, config.log_format)
    raise_fd_limit()
    exposed = security.exposure_problem(config)
    if exposed:
        _log.error("cannot_start", service=name, error=exposed)
        raise SystemExit(1)
    try:
        check_listeners(name, config)
    except ports.PortTaken as exc:
        _log.error("cannot_start", service=name, error=str(exc))
        raise SystemExit(1) from None
    rpc.configure(security.Security.from_config(config).outbound)  # every channel to another node

    async def main(stop: asyncio.Event) -> None:
        server = build()
        try:
            await server.start()
        except OSError as exc:  # a port taken since the check: one line, not a traceback
            _log.error("cannot_start", service=name, error=str(exc))
            await _release(server)
            raise SystemExit(1) from None
        exporter = _serve_metrics(name, config)
        _freeze_startup_objects()
        if launch.ready_fd is not None:
            report_ready(launch.ready_fd, bound_ports(server) | ({"metrics": exporter.port} if exporter.port else {}))
        await stop.wait()
        _log.info("stopping", service=name)
        await server.stop()
        await asyncio.to_thread(exporter.stop)

    run(main, shutdown_limit)


def _freeze_startup_objects() -> None:
    """Move what exists once the node has started (modules, descriptors, the servers:
    about 68,000 objects in connect) out of the garbage collector's reach. A full
    collection then scans only what came since: in a connect node signing in 8,000
    clients, each full collection took 51-169 ms for 43,000-116,000 such objects, which
    the startup objects would have lengthened by half again (an event-loop pause each)."""
    gc.collect()
    gc.freeze()


def _serve_metrics(name: str, cfg: BaseConfig) -> metrics.MetricsListener:
    """The node's /metrics listener (`metrics_listen`, '' = none). A port it cannot listen
    on is logged, not fatal: a node without metrics still serves its clients."""
    exporter = metrics.MetricsListener()
    listen = str(getattr(cfg, "metrics_listen", "") or "")
    if listen:
        try:
            _log.info("metrics_listening", service=name, port=exporter.start(listen))
        except OSError as exc:
            _log.error("metrics_listen_failed", service=name, metrics_listen=listen, error=str(exc))
    return exporter


async def _release(server: Server) -> None:
    """Stop what a failed start opened (bounded), while the loop still runs: a gRPC
    server left for the garbage collector would complain that the loop is closed."""
    try:
        async with asyncio.timeout(CLEANUP_LIMIT):
            await server.stop(0)
    except Exception as exc:  # it never fully started: whatever it could not stop is logged
        _log.debug("cleanup_incomplete", error=repr(exc))


def report_ready(fd: int, bound: dict[str, int]) -> None:
    with contextlib.suppress(OSError), os.fdopen(fd, "w") as pipe:  # a launcher that is gone does not care
        pipe.write(f"ready {json.dumps(bound)}\n")


def main(
    name: str,
    config_cls: type[C],
    build: Callable[[C], Server],
    argv: list[str] | None = None,
    workers: Callable[[C, int, Launch], None] | None = None,
) -> None:
    """The entry point of one service process: `gim-<name> [--config PATH]`; with
    `workers` (logic, connect) also `--workers N`, which hands the configuration to it."""
    parser = argparse.ArgumentParser(prog=f"gim-{name}", description=f"Run the gim {name} service.")
    parser.add_argument("--config", type=Path, help=f"YAML file (default: config/{name}.yaml)")
    if workers is not None:
        parser.add_argument(
            "--workers", type=int, default=1, metavar="N", help="N processes sharing the public ports (default 1)"
        )
    parser.add_argument("--parent-pid", type=int, help="exit when this process ends (set by gim run)")
    parser.add_argument("--ready-fd", type=int, help="write 'ready' to this descriptor once serving (set by gim run)")
    args = parser.parse_args(argv)
    if args.parent_pid is not None and not parent_death.die_with_parent(args.parent_pid):
        raise SystemExit(f"gim-{name}: the process that started it (pid {args.parent_pid}) is gone")
    if args.config is not None and not args.config.is_file():
        raise SystemExit(f"gim-{name}: bad configuration: {args.config}: no such file")
    try:
        cfg = config.load(config_cls, name, path=args.config)
    except config.ConfigError as exc:
        raise SystemExit(f"gim-{name}: bad configuration: {exc}") from None
    count = getattr(args, "workers", 1)
    if count < 1:
        raise SystemExit(f"gim-{name}: --workers must be at least 1")
    if workers is not None and count > 1:
        workers(cfg, count, Launch(args.parent_pid, args.ready_fd))
        return
    serve(name, cfg, lambda: build(cfg), Launch(args.parent_pid, args.ready_fd))
