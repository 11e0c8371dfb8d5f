"""Running a service process: signals, raised descriptor limit, graceful stop."""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from gim.pkg import config, log
from gim.pkg.config import C, BaseConfig

_log = log.get("service")


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on a new event loop; SIGINT/SIGTERM set `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


class Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace: float = 5.0) -> None: ...


def serve(name: str, config: BaseConfig, build: Callable[[], Server]) -> None:
    """Set up logging, build the server, run it until SIGINT/SIGTERM, stop it gracefully."""
    log.setup(config.log_level, config.log_format)
    raise_fd_limit()

    async def main(stop: asyncio.Event) -> None:
        server = build()
        try:
            await server.start()
        except OSError as exc:  # a port taken, most likely: one line that says which, not a traceback
            _log.error("cannot_start", service=name, error=str(exc))
            raise SystemExit(1) from None
        await stop.wait()
        _log.info("stopping", service=name)
        await server.stop()

    run(main)


def main(name: str, config_cls: type[C], build: Callable[[C], Server], argv: list[str] | None = None) -> None:
    """The entry point of one service process: `gim-<name> [--config PATH]`."""
    parser = argparse.ArgumentParser(prog=f"gim-{name}", description=f"Run the gim {name} service.")
    parser.add_argument("--config", type=Path, help=f"YAML file (default: config/{name}.yaml)")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(config_cls, name, path=args.config)
    except config.ConfigError as exc:
        raise SystemExit(f"gim-{name}: bad configuration: {exc}") from None
    serve(name, cfg, lambda: build(cfg))
