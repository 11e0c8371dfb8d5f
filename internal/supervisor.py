"""`gim run`: the three services as child processes on one machine, plus a demo.

Before starting anything it makes sure it is alone: one `gim run` per var folder
(`<var>/gim.pid`, see `run_lock`) and every service's listen address free (else one line
naming the address and the process that holds it, exit 1). Then it starts the embedded
Redis when the configured one is a loopback address where nothing listens, creates the
schema, starts business, logic and connect (each in its own process group, so Ctrl-C
reaches only this supervisor; their logs go to `<var>/log/<service>.log`), and prints the
endpoints and two signed-in demo users.

With `--workers N` it starts N logic and N connect processes sharing the public ports
(`internal.workers`); a worker that dies leaves its siblings serving (one line says so).

It stops connect, logic and business in that order, then the embedded Redis, on Ctrl-C,
SIGTERM or SIGHUP (a closed terminal); a second one kills the services at once. When a
service dies on its own (its last worker) it stops the others and exits 1, naming it and
showing the end of its log. If the supervisor itself dies (SIGKILL, a crash) the services get SIGTERM from
the kernel (`pkg.parent_death`) and the embedded Redis from a small reaper process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gim.internal import workers as worker_plan
from gim.internal.launcher import LISTENERS, SERVICES, Launcher, LaunchError, Node, NodeSpec, service_env
from gim.internal.run_lock import AlreadyRunning, RunLock
from gim.pkg import config, log, ports, redis_client, rpc, security, service
from gim.pkg.pb import logic_ext_pb2, logic_ext_pb2_grpc, user_ext_pb2, user_ext_pb2_grpc

_log = log.get("run")
DEMO_PHONES = ("18800000001", "18800000002")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WILDCARD = {"", "0.0.0.0", "::"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# a service has this long to stop after SIGTERM before it is killed: past its own bound
STOP_TIMEOUT = service.SHUTDOWN_LIMIT + 5.0
# logic's HTTP listeners under gim run, unless configured (docs/http.md): the chat page and
# the HTTP/JSON API, and the private LogicInt calls over HTTP
RUN_HTTP_LISTEN = "127.0.0.1:8088"
RUN_HTTP_INT_LISTEN = "127.0.0.1:8089"
T = TypeVar("T")


def run_all(dev_code: str, var_dir: str, workers: int = 1) -> None:
    configs = {
        "business": config.load(config.BusinessConfig, "business"),
        "logic": config.load(config.LogicConfig, "logic"),
        "connect": config.load(config.ConnectConfig, "connect"),
    }
    log.setup(configs["logic"].log_level, configs["logic"].log_format)
    os.environ.update(_with_web(configs))  # the services read it (through the launcher)
    var = Path(var_dir)
    lock = RunLock(var)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        raise SystemExit(f"gim: {exc}") from None
    try:
        _check_ports(configs, workers)
        asyncio.run(Supervisor(configs, dev_code, var, workers).run())
    except KeyboardInterrupt:  # before the signal handlers were in place
        pass
    finally:
        lock.release()


def _reachable(addr: str) -> str:
    """A listen address as this machine reaches it (a wildcard host -> 127.0.0.1)."""
    host, port = config.split_host_port(addr)
    host = "127.0.0.1" if host in WILDCARD else host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _services(
    configs: dict[str, config.BaseConfig],
) -> tuple[config.LogicConfig, config.BusinessConfig, config.ConnectConfig]:
    """The three services' configurations, each as its own type."""
    logic, business, connect = configs["logic"], configs["business"], configs["connect"]
    assert isinstance(logic, config.LogicConfig) and isinstance(business, config.BusinessConfig)
    assert isinstance(connect, config.ConnectConfig)
    return logic, business, connect


def _with_web(configs: dict[str, config.BaseConfig]) -> dict[str, str]:
    """gim run serves the chat page and the HTTP API: logic's HTTP listeners on
    RUN_HTTP_LISTEN / RUN_HTTP_INT_LISTEN unless configured, UserExt forwarded to this run's
    business, the page's WebSocket this run's connect. Updates `configs["logic"]`; returns
    the environment that tells the logic process the same."""
    logic, business, connect = _services(configs)
    default = config.LogicConfig()
    scheme = "wss" if "ws" in security.tls_listeners(connect.tls) else "ws"
    wanted: dict[str, Any] = {
        "http_listen": logic.http_listen or RUN_HTTP_LISTEN,
        "http_int_listen": logic.http_int_listen or RUN_HTTP_INT_LISTEN,
        "business_ext_addr": _reachable(business.ext_listen),
        "web_ws_url": f"{scheme}://{_reachable(connect.ws_listen)}/ws",
    }
    for key in ("business_ext_addr", "web_ws_url"):  # configured: kept
        if getattr(logic, key) != getattr(default, key):
            wanted[key] = getattr(logic, key)
    configs["logic"] = dataclasses.replace(logic, **wanted)
    return service_env("logic", wanted)


def _check_ports(configs: dict[str, config.BaseConfig], workers: int = 1) -> None:
    """Every service's listen addresses (and those of every worker) are distinct and free,
    before anything starts."""
    if workers < 1:
        raise SystemExit("gim: --workers must be at least 1")
    logic_int = config.split_host_port(_services(configs)[0].int_listen)[1]
    if workers > 1 and not logic_int:
        raise SystemExit("gim: --workers needs a logic int_listen port (worker i listens on it + i), not 0")
    seen: dict[tuple[str, int], str] = {}
    for name in SERVICES:
        addresses = [(f"{name} {listener}_listen", getattr(configs[name], f"{listener}_listen"))
                     for listener in LISTENERS[name]]  # fmt: skip
        if name in worker_plan.SCALED:
            addresses += worker_plan.private_addresses(name, configs[name], workers)
        for setting, addr in addresses:
            host, port = config.split_host_port(addr, setting)
            for (other_host, other_port), other in seen.items():
                overlap = host == other_host or bool({host, other_host} & WILDCARD)
                if port and port == other_port and overlap:
                    raise SystemExit(f"gim: {other} and {setting} both listen on port {port}; give each its own")
            seen[(host, port)] = setting
        try:
            service.check_listeners(name, configs[name])
            for setting, addr in addresses[len(LISTENERS[name]) :]:
                ports.check_free(*config.split_host_port(addr, setting), setting)
        except ports.PortTaken as exc:
            raise SystemExit(f"gim: {exc}") from None


class Supervisor:
    def __init__(self, configs: dict[str, config.BaseConfig], dev_code: str, var: Path, workers: int = 1) -> None:
        self.configs = configs
        self.dev_code = dev_code
        self.var = var
        self.workers = workers
        env = dict(os.environ)
        env.setdefault("GIM_BUSINESS_DEV_CODE", dev_code)
        (var / "log").mkdir(parents=True, exist_ok=True)
        self.nodes = Launcher(_specs(configs, workers), env=env, log_dir=var / "log")
        self.redis: redis_client.EmbeddedRedis | None = None
        self.reaper: asyncio.subprocess.Process | None = None
        self.stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        failed = False
        try:
            if await self._unless_stopped(self._start()):
                failed = await self._until_stopped() is not None
        except LaunchError as exc:
            print(f"gim: {exc}", file=sys.stderr, flush=True)
            failed = True
        finally:
            await self.nodes.stop(STOP_TIMEOUT)
            await self._stop_redis()
            print("gim: stopped", flush=True)
        if failed:
            raise SystemExit(1)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stop.is_set():
            _log.info("stop_requested", signal=sig.name)
            self.stop.set()
            return
        print(f"gim: {sig.name} again: killing the services now", file=sys.stderr, flush=True)
        for node in self.nodes.nodes.values():
            if node.running and node.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`'s result, or None if a stop signal came first (`work` is then cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait([task])  # its end; a cancellation of this call still propagates
        return None if task.cancelled() else task.result()

    async def _start(self) -> bool:
        logic = self.configs["logic"]
        assert isinstance(logic, config.LogicConfig)
        await self._embedded_redis_if_needed(logic.redis_url)
        from gim.cmd.gim import migrate

        await migrate(logic)
        await self.nodes.start()  # LaunchError: reported by run()
        demo = await _demo(self.configs, self.dev_code) if self.dev_code else []  # no code, no demo sign-in
        bound = self.nodes.of("logic")[0].ports  # the HTTP ports as bound (a configured port 0 is a free one)
        web = {
            name: _bound(getattr(self.configs["logic"], f"{name}_listen"), bound.get(name))
            for name in ("http", "http_int")
        }
        _print_banner(self.configs, demo, self.var / "log", self.dev_code, web, self.workers)
        return True

    async def _until_stopped(self) -> Node | None:
        """Until a stop signal (None), or until a service's last node exits on its own (that
        node); a worker that exits while siblings serve is reported, and they go on."""
        while (node := await self._unless_stopped(self.nodes.exited())) is not None:
            siblings = [other.name for other in self.nodes.of(node.spec.service) if other.running]
            if not siblings:
                break
            print(
                f"gim: {node.name} (pid {node.pid}) exited with code {node.returncode}; "
                f"{', '.join(siblings)} still serving (its log: {node.log_path})",
                file=sys.stderr,
                flush=True,
            )
        if node is not None:
            tail = node.log_tail(20)
            print(
                f"gim: {node.name} (pid {node.pid}) exited with code {node.returncode}; stopping the other services\n"
                + (f"the last lines of {node.log_path}:\n{tail}" if tail else f"its log {node.log_path} is empty"),
                file=sys.stderr,
                flush=True,
            )
        return node

    async def _embedded_redis_if_needed(self, url: str) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if host not in LOOPBACK or redis_client.port_open(host, port):
            return
        self.redis = redis_client.EmbeddedRedis(self.var / "redis", port, host="127.0.0.1")
        await self.redis.start()
        redis_pid = self.redis.pid
        self.reaper = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "gim.internal.reaper", str(os.getpid()), str(redis_pid),
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    async def _stop_redis(self) -> None:
        if self.reaper is not None and self.reaper.returncode is None:
            self.reaper.kill()  # not needed any more: the Redis is stopped here
            await self.reaper.wait()
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)


def _specs(configs: dict[str, config.BaseConfig], workers: int = 1) -> list[NodeSpec]:
    """One node of each service, listening where its configuration says; with `workers`
    above 1, that many logic and connect nodes, and every logic one in the peer lists."""
    if workers == 1:
        return [spec for name in SERVICES for spec in worker_plan.worker_specs(name, configs[name], 1)]
    peers = {"logic_int_addr": worker_plan.logic_peers(_services(configs)[0], workers)}
    return [
        *worker_plan.worker_specs("business", configs["business"], 1, service_env("business", peers)),
        *worker_plan.worker_specs("logic", configs["logic"], workers),
        *worker_plan.worker_specs("connect", configs["connect"], workers, service_env("connect", peers)),
    ]


async def _demo(configs: dict[str, config.BaseConfig], dev_code: str) -> list[tuple[str, int, int, str]]:
    """Two users, each signed in on a new device: (phone, user_id, device_id, token)."""
    logic_config, business_config, _ = _services(configs)
    logic_ch = rpc.channel(logic_config.ext_listen)
    user_ch = rpc.channel(business_config.ext_listen)
    out = []
    try:
        logic = logic_ext_pb2_grpc.LogicExtStub(logic_ch)
        users = user_ext_pb2_grpc.UserExtStub(user_ch)
        for phone in DEMO_PHONES:
            device = await logic.RegisterDevice(
                logic_ext_pb2.RegisterDeviceReq(type=3, brand="demo", model="gim run"), timeout=10
            )
            signed = await users.SignIn(
                user_ext_pb2.SignInReq(phone_number=phone, code=dev_code, device_id=device.device_id),
                timeout=10,
            )
            out.append((phone, signed.user_id, device.device_id, signed.token))
    finally:
        await logic_ch.close()
        await user_ch.close()
    return out


def _bound(addr: str, port: int | None) -> str:
    """`addr` as reached from this machine, with the port a node reported (for port 0)."""
    reach = _reachable(addr)
    return f"{reach.rsplit(':', 1)[0]}:{port}" if port else reach


def _print_banner(
    configs: dict[str, config.BaseConfig],
    demo: list[tuple[str, int, int, str]],
    logs: Path,
    dev_code: str,
    web: dict[str, str] | None = None,
    workers: int = 1,
) -> None:
    lg, b, c = _services(configs)
    web = web or {}
    scheme = "https" if "ext" in security.tls_listeners(lg.tls) else "http"
    page = f"{scheme}://{web['http']}/" if web.get("http") else ""
    web_lines = []
    if page:
        web_lines += [f"  chat in a browser      {page}", f"  HTTP/JSON API          {page}v1/...  (docs/http.md)"]
    if web.get("http_int"):
        web_lines.append(f"  LogicInt  (HTTP)       {web['http_int']}  (private: business backends)")
    lines = [
        "",
        "gim is running (Ctrl-C stops all three services)"
        if workers == 1
        else f"gim is running with {workers} logic and {workers} connect workers (Ctrl-C stops them all)",
        f"  TCP long connections   {c.tcp_listen}",
        f"  WebSocket              ws://{c.ws_listen}/ws",
        f"  LogicExt  (gRPC)       {lg.ext_listen}",
        f"  UserExt   (gRPC)       {b.ext_listen}",
        *web_lines,
        f"  LogicInt / UserInt / ConnectInt (private)  {lg.int_listen} / {b.int_listen} / {c.int_listen}"
        + ("  (worker i: port + i)" if workers > 1 else ""),
        f"  database               {lg.database_url}",
        f"  redis                  {lg.redis_url}",
        f"  service logs           {logs}/business.log, logic.log, connect.log"
        if workers == 1
        else f"  service logs           {logs}/business.log, logic-1..{workers}.log, connect-1..{workers}.log",
        "",
        f"demo users (the development sign-in code {dev_code} works for any phone number):",
    ]
    if not demo:
        lines[-1] = "no demo users: the development sign-in code is off"
    for phone, user_id, device_id, token in demo:
        lines.append(f"  phone {phone}  user_id {user_id}  device_id {device_id}  token {token}")
    lines += _next_steps(configs, demo, dev_code, page)
    print("\n".join(lines), flush=True)


def _next_steps(
    configs: dict[str, config.BaseConfig], demo: list[tuple[str, int, int, str]], dev_code: str, page: str = ""
) -> list[str]:
    """What to do next: open the chat page, or `gim client` for the first two demo users."""
    if len(demo) < 2:
        return [""]
    client = _client_command(configs, dev_code)
    (alice, _, _, _), (bob, bob_id, _, _) = demo[:2]
    if page:
        intro = [f"next, open {page} in two browser windows and sign in as {alice} and {bob} (code {dev_code}),",
                 "or chat in two more terminals:"]  # fmt: skip
    else:
        intro = ["next, chat in two more terminals:"]
    return [
        "",
        *intro,
        f"  {client} --phone {alice}",
        f"  {client} --phone {bob}",
        f"and type  /to {bob_id} hello  in the first (/help lists the commands)",
        "",
    ]


def _client_command(configs: dict[str, config.BaseConfig], dev_code: str) -> str:
    """`gim client` as this gim was started (`.venv/bin/gim` under `make run`), with the
    addresses and code that differ from the client's defaults."""
    gim = sys.argv[0] if os.path.basename(sys.argv[0]) == "gim" else "gim"
    if os.path.isabs(gim) and gim.startswith(os.getcwd() + os.sep):
        gim = os.path.relpath(gim)
    logic, business, connect = _services(configs)
    options = {
        "--tcp": (connect.tcp_listen, "127.0.0.1:8080"),
        "--logic": (logic.ext_listen, "127.0.0.1:50001"),
        "--business": (business.ext_listen, "127.0.0.1:50301"),
        "--code": (dev_code, "0000"),
    }
    extra = "".join(f" {option} {value}" for option, (value, default) in options.items() if value != default)
    return f"{gim} client{extra}"
