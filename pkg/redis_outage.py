"""Redis as a cache that may be away: which errors mean "unreachable", and their logging.

Where the database holds the truth (tokens, acks, users, devices, groups), an operation
that finds Redis unreachable goes on without it: a read becomes a miss, a write is
skipped. `RedisOutage` logs that without a line per call: the first skip at once, then at
most one warning per `interval` seconds with how many there were, and one line when Redis
answers again.
"""

from __future__ import annotations

import time

from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from gim.pkg import log

# BusyLoadingError (Redis loading its data after a restart) is a ConnectionError; named
# here because it is one of the three ways Redis is "not there" for a while.
UNREACHABLE = (ConnectionError, TimeoutError, BusyLoadingError)

_log = log.get("redis")


class RedisOutage:
    def __init__(self, component: str, interval: float = 10.0) -> None:
        self._component = component
        self._interval = interval
        self._skipped = 0  # since Redis last answered
        self._unlogged = 0  # since the last warning
        self._logged_at = float("-inf")

    @property
    def down(self) -> bool:
        """The last operation found Redis unreachable."""
        return self._skipped > 0

    def skipped(self, operation: str, error: BaseException) -> None:
        """`operation` went on without Redis (a read taken as a miss, a write left out)."""
        self._skipped += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= self._interval:
            _log.warning(
                "redis_unreachable",
                of=self._component,
                operation=operation,
                skipped=self._unlogged,
                error=str(error) or type(error).__name__,
            )
            self._unlogged = 0
            self._logged_at = now

    def ok(self) -> None:
        """Redis answered: if it had been unreachable, say so once."""
        if self._skipped:
            _log.info("redis_reachable_again", of=self._component, skipped=self._skipped)
            self._skipped = 0
            self._unlogged = 0
            self._logged_at = float("-inf")
