"""gim-logic: run the logic service."""

from __future__ import annotations

from gim.internal.logic.server import LogicServer
from gim.pkg import service
from gim.pkg.config import LogicConfig


def main(argv: list[str] | None = None) -> None:
    service.main("logic", LogicConfig, LogicServer.from_config, argv, workers=_workers)


def _workers(cfg: LogicConfig, count: int, launch: service.Launch) -> None:
    from gim.internal.workers import run_workers

    run_workers("logic", cfg, count, launch)


if __name__ == "__main__":
    main()
