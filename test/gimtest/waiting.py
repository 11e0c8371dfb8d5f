"""Waiting, bounded, for what another task or process does next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], what: str = "", timeout: float = 10.0) -> None:
    """Poll (bounded: TimeoutError after `timeout` seconds) until `condition()` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what
