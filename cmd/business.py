"""gim-business: run the business service."""

from __future__ import annotations

from gim.internal.business.server import BusinessServer
from gim.pkg import service
from gim.pkg.config import BusinessConfig


def main(argv: list[str] | None = None) -> None:
    service.main("business", BusinessConfig, BusinessServer.from_config, argv)


if __name__ == "__main__":
    main()
