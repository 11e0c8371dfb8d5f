"""Workers: N logic and N connect processes of one machine sharing its public ports.

Every worker of a service listens on the same public addresses as its siblings, with
SO_REUSEPORT (`reuse_port`; the kernel spreads new connections over the listening
processes by a hash of the client's address and port), and on private addresses of its
own: worker i (0, 1, ...) listens for its private calls on `int_listen`'s port + i and
serves its metrics on a free port of `metrics_listen`'s host (the launcher's ready line
says which). A connect worker advertises its own private address (`conn_addr`, shifted
likewise when it is set; else the one it binds), so logic reaches the very process that
holds a device. Whoever calls logic (connect, business) lists every logic worker.

Business stays one process: it is not on the message path. `gim run --workers N` starts
the workers with the other services; `gim logic --workers N` and `gim connect --workers
N` (`run_workers`) start one service's workers alone.
"""

from __future__ import annotations

import asyncio
import dataclasses

from gim.internal.launcher import LISTENERS, Launcher, NodeSpec, service_env
from gim.pkg import config, log, ports, service

_log = log.get("workers")

SCALED = ("logic", "connect")  # the services that run as workers
WILDCARD = {"", "0.0.0.0", "::"}


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def shifted(addr: str, index: int) -> str:
    """`addr` with its port + `index` (port 0, "any free port", stays 0)."""
    host, port = config.split_host_port(addr)
    return join_host_port(host, port + index if port else 0)


def reachable(addr: str) -> str:
    """A listen address as a peer on this machine dials it: an IP (peer lists take IPs)."""
    host, port = config.split_host_port(addr)
    host = "127.0.0.1" if host in WILDCARD or host == "localhost" else host
    return join_host_port(host, port)


def logic_peers(logic: config.LogicConfig, workers: int) -> str:
    """Every logic worker's private address, as `logic_int_addr` lists them."""
    return ",".join(reachable(shifted(logic.int_listen, i)) for i in range(workers))


def _setting(cfg: config.BaseConfig, key: str) -> str:
    """A `*_listen` or address setting of whichever service `cfg` configures ('' if it has none)."""
    return str(getattr(cfg, key, "") or "")


def worker_settings(service: str, cfg: config.BaseConfig, index: int) -> dict[str, object]:
    """The keys worker `index` of `service` gets on top of its service's configuration `cfg`."""
    int_listen = _setting(cfg, "int_listen")
    values: dict[str, object] = {"reuse_port": True, "int_listen": shifted(int_listen, index)}
    metrics_listen = _setting(cfg, "metrics_listen")
    if metrics_listen:
        values["metrics_listen"] = join_host_port(config.split_host_port(metrics_listen)[0], 0)
    conn_addr = _setting(cfg, "conn_addr")
    if conn_addr:
        values["conn_addr"] = shifted(conn_addr, index)
    return values


def worker_specs(
    service: str, cfg: config.BaseConfig, workers: int, env: dict[str, str] | None = None
) -> list[NodeSpec]:
    """`workers` nodes of `service` (`service-1` ... `service-N`; just `service` when one,
    configured exactly as `cfg`), each with `env` on top of its own settings."""
    listen = {listener: _setting(cfg, f"{listener}_listen") for listener in LISTENERS[service]}
    if workers == 1:
        return [NodeSpec(service, service, listen, dict(env or {}))]
    specs = []
    for index in range(workers):
        own = worker_settings(service, cfg, index)
        spec_env = {**(env or {}), **service_env(service, own)}
        specs.append(NodeSpec(f"{service}-{index + 1}", service, {**listen, "int": str(own["int_listen"])}, spec_env))
    return specs


def private_addresses(service: str, cfg: config.BaseConfig, workers: int) -> list[tuple[str, str]]:
    """(setting, address) of the private ports workers 2..N add to what `cfg` lists."""
    int_listen = _setting(cfg, "int_listen")
    return [(f"{service}-{i + 1} int_listen", shifted(int_listen, i)) for i in range(1, workers)]


def run_workers(service_name: str, cfg: config.BaseConfig, workers: int, launch: service.Launch) -> None:
    """`gim-<service> --workers N`: the workers of one service as child processes of this
    one, each configured as `cfg` (passed on in the environment) plus its own settings;
    until SIGINT, SIGTERM or SIGHUP (then each gets SIGTERM) or until the last one exits
    (exit 1). A worker that exits while siblings serve is logged, and they go on."""
    log.setup(cfg.log_level, cfg.log_format)
    try:
        service.check_listeners(service_name, cfg)  # the shared ports, before any worker holds them
        for setting, addr in private_addresses(service_name, cfg, workers):
            ports.check_free(*config.split_host_port(addr, setting), setting)
    except ports.PortTaken as exc:
        raise SystemExit(f"gim-{service_name}: {exc}") from None
    base = service_env(service_name, dataclasses.asdict(cfg))  # what a --config file said, for every worker
    group = Launcher(worker_specs(service_name, cfg, workers, base))
    failed = False

    async def main(stop: asyncio.Event) -> None:
        nonlocal failed
        await group.start()
        if launch.ready_fd is not None:
            service.report_ready(launch.ready_fd, group.of(service_name)[0].ports)
        _log.info("workers_ready", service=service_name, pids=[node.pid for node in group.of(service_name)])
        try:
            while not stop.is_set():
                exited = asyncio.ensure_future(group.exited())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not exited.done():
                    exited.cancel()
                    break
                node = exited.result()
                alive = [other.name for other in group.of(service_name) if other.running]
                _log.error("worker_exited", worker=node.name, pid=node.pid, code=node.returncode, serving=alive)
                if not alive:
                    failed = True
                    break
        finally:
            await group.stop(service.SHUTDOWN_LIMIT - 2.0)

    service.run(main)
    if failed:
        raise SystemExit(1)
