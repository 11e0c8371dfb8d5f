"""More concurrent Redis commands than connections: they wait for one, none fails.

(Under a sign-in storm the business service used to fail token checks with redis-py's
"Too many connections".)"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from gim.pkg import redis_client

if TYPE_CHECKING:
    from gimtest.backends import Storage


async def test_commands_beyond_the_pool_size_wait_instead_of_failing(storage: Storage) -> None:
    client = redis_client.connect(storage.redis_url)
    key = f"{storage.redis_prefix}pool-test-{uuid.uuid4().hex}"
    try:
        # each BLPOP holds its connection until it times out (0.05 s): three times the pool
        waits = [client.blpop([key], timeout=0.05) for _ in range(3 * redis_client.POOL_SIZE)]
        assert await asyncio.gather(*waits) == [None] * (3 * redis_client.POOL_SIZE)
    finally:
        await client.aclose()
