"""gim-connect: run the connect service."""

from __future__ import annotations

from gim.internal.connect.server import ConnectServer
from gim.pkg import service
from gim.pkg.config import ConnectConfig


def main(argv: list[str] | None = None) -> None:
    service.main("connect", ConnectConfig, ConnectServer.from_config, argv, workers=_workers)


def _workers(cfg: ConnectConfig, count: int, launch: service.Launch) -> None:
    from gim.internal.workers import run_workers

    run_workers("connect", cfg, count, launch)


if __name__ == "__main__":
    main()
