"""`gim run`: the three services as child processes on one machine, plus a demo.

Starts the embedded Redis when the configured one is a loopback address where
nothing listens, creates the schema, starts business, logic and connect (each in
its own process group, so Ctrl-C reaches only this supervisor), prints the
endpoints and two signed-in demo users, and on Ctrl-C/SIGTERM stops connect, logic
and business in that order.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

from gim.internal.launcher import LISTENERS, SERVICES, LaunchError, Launcher, NodeSpec
from gim.pkg import config, log, redis_client, rpc
from gim.pkg.pb import logic_ext_pb2, logic_ext_pb2_grpc, user_ext_pb2, user_ext_pb2_grpc

_log = log.get("run")
DEMO_PHONES = ("18800000001", "18800000002")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def run_all(dev_code: str, var_dir: str) -> None:
    configs = {
        "business": config.load(config.BusinessConfig, "business"),
        "logic": config.load(config.LogicConfig, "logic"),
        "connect": config.load(config.ConnectConfig, "connect"),
    }
    log.setup(configs["logic"].log_level, configs["logic"].log_format)
    try:
        asyncio.run(_supervise(configs, dev_code, Path(var_dir)))
    except KeyboardInterrupt:
        pass


async def _supervise(configs: dict[str, config.BaseConfig], dev_code: str, var: Path) -> None:
    logic = configs["logic"]
    assert isinstance(logic, config.LogicConfig)
    redis = await _embedded_redis_if_needed(logic.redis_url, var / "redis")
    env = dict(os.environ)
    env.setdefault("GIM_BUSINESS_DEV_CODE", dev_code)
    nodes = Launcher(_specs(configs), env=env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        from gim.cmd.gim import migrate

        await migrate(logic)
        try:
            await nodes.start()
        except LaunchError as exc:
            raise SystemExit(f"gim: {exc}") from None
        demo = await _demo(configs, dev_code)
        _print_banner(configs, demo)
        await _until_stopped(nodes, stop)
    finally:
        await nodes.stop()
        if redis is not None:
            redis.stop()
        print("gim: stopped", flush=True)


def _specs(configs: dict[str, config.BaseConfig]) -> list[NodeSpec]:
    """One node of each service, listening where its configuration says."""
    specs = []
    for name in SERVICES:
        cfg = configs[name]
        listen = {listener: getattr(cfg, f"{listener}_listen") for listener in LISTENERS[name]}
        specs.append(NodeSpec(name, name, listen))
    return specs


async def _until_stopped(nodes: Launcher, stop: asyncio.Event) -> None:
    """Until Ctrl-C/SIGTERM, or until a service exits on its own."""
    stopped = asyncio.ensure_future(stop.wait())
    exited = asyncio.ensure_future(nodes.exited())
    try:
        await asyncio.wait([stopped, exited], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        exited.cancel()
    if exited.done() and not exited.cancelled():
        node = exited.result()
        _log.error("service_exited", service=node.name, code=node.returncode)


async def _embedded_redis_if_needed(url: str, folder: Path) -> redis_client.EmbeddedRedis | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if host not in LOOPBACK or redis_client.port_open(host, port):
        return None
    embedded = redis_client.EmbeddedRedis(folder, port, host="127.0.0.1")
    await embedded.start()
    return embedded


async def _demo(configs: dict[str, config.BaseConfig], dev_code: str) -> list[tuple[str, int, int, str]]:
    """Two users, each signed in on a new device: (phone, user_id, device_id, token)."""
    logic_ch = rpc.channel(configs["logic"].ext_listen)  # type: ignore[attr-defined]
    user_ch = rpc.channel(configs["business"].ext_listen)  # type: ignore[attr-defined]
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


def _print_banner(configs: dict[str, config.BaseConfig], demo: list[tuple[str, int, int, str]]) -> None:
    c, lg, b = configs["connect"], configs["logic"], configs["business"]
    lines = [
        "",
        "gim is running (Ctrl-C stops all three services)",
        f"  TCP long connections   {c.tcp_listen}",  # type: ignore[attr-defined]
        f"  WebSocket              ws://{c.ws_listen}/ws",  # type: ignore[attr-defined]
        f"  LogicExt  (gRPC)       {lg.ext_listen}",  # type: ignore[attr-defined]
        f"  UserExt   (gRPC)       {b.ext_listen}",  # type: ignore[attr-defined]
        f"  LogicInt / UserInt / ConnectInt (private)  {lg.int_listen} / {b.int_listen} / {c.int_listen}",  # type: ignore[attr-defined]
        f"  database               {lg.database_url}",  # type: ignore[attr-defined]
        f"  redis                  {lg.redis_url}",
        "",
        "demo users (sign-in code for any phone number: the development code):",
    ]
    for phone, user_id, device_id, token in demo:
        lines.append(f"  phone {phone}  user_id {user_id}  device_id {device_id}  token {token}")
    lines.append("")
    print("\n".join(lines), flush=True)
