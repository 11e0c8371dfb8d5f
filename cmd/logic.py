"""gim-logic: run the logic service."""

from __future__ import annotations

from gim.internal.logic.server import LogicServer
from gim.pkg import service
from gim.pkg.config import LogicConfig


def main(argv: list[str] | None = None) -> None:
    service.main("logic", LogicConfig, LogicServer.from_config, argv)


if __name__ == "__main__":
    main()
