"""Rate limits shared by every node of a service: fixed windows counted in Redis.

A limit is "`count` per `window` seconds", written in the configuration as `5/15m`
(units s, m, h; an empty string is no limit). `RateLimiter.hit` counts one event for a
key (a user id, a phone number, a client address) with one Redis round trip (INCRBY and,
for the first event of a window, PEXPIRE, in one script) and says whether the key is now
over its limit and for how long the window still runs. `RateLimiter.over` only looks.

Redis unreachable: the limit is not applied (fails open) and that is logged, summarised
(`pkg.redis_outage`): gim keeps serving while Redis is away, as everywhere else; the
limits come back with Redis.

A refused call raises `RateLimited`, answered RESOURCE_EXHAUSTED with its message.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re

import redis.asyncio as aioredis

from gim.pkg import log
from gim.pkg.errors import Overloaded
from gim.pkg.redis_outage import UNREACHABLE, RedisOutage

_log = log.get("limits")

_UNITS = {"s": 1, "m": 60, "h": 3600}
_RATE = re.compile(r"\s*(?P<count>[0-9]+)\s*/\s*(?P<window>[0-9]+)\s*(?P<unit>[smh])\s*")

# KEYS[1] the counter; ARGV[1] how much to add (0: only look), ARGV[2] the window in ms.
# Returns {count, ms left in the window}.
_HIT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  if n == 0 then
    redis.call('DEL', KEYS[1])
    return {0, 0}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {n, ttl}
"""


class RateLimited(Overloaded):
    """A limit was reached: RESOURCE_EXHAUSTED with this message; nothing was done."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Rate:
    count: int
    window: int  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """'5/15m' -> Rate(5, 900); '' -> None (no limit). ValueError if malformed."""
        if not text.strip():
            return None
        match = _RATE.fullmatch(text)
        if not match or int(match["count"]) < 1 or int(match["window"]) < 1:
            raise ValueError("expected COUNT/WINDOW with a unit s, m or h (e.g. 5/15m), both >= 1, or '' for none")
        return cls(int(match["count"]), int(match["window"]) * _UNITS[match["unit"]])

    def __str__(self) -> str:
        return f"{self.count} per {_duration(self.window)}"


def rate_problem(text: str) -> str | None:
    """For config checks: what is wrong with a rate setting, or None."""
    try:
        Rate.parse(text)
    except ValueError as exc:
        return str(exc)
    return None


def _duration(seconds: float) -> str:
    """A wait or a window for people: '40 seconds', '1 minute', '15 minutes', '2 hours'."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            n = math.ceil(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = max(1, math.ceil(seconds))
    return f"{n} second{'s' if n != 1 else ''}"


def wait_text(seconds: float) -> str:
    """'try again in 15 minutes'."""
    return f"try again in {_duration(seconds)}"


@dataclasses.dataclass(frozen=True)
class Count:
    """A key's events in its current window and the seconds until the window ends."""

    count: int
    retry_after: float


class RateLimiter:
    """Fixed-window counters under `{prefix}limit:{name}:{key}`."""

    def __init__(self, redis: aioredis.Redis, prefix: str, component: str) -> None:
        self._prefix = prefix
        self._script = redis.register_script(_HIT)
        self._outage = RedisOutage(f"{component} limits")
        self._refusals = log.Summary(_log)

    async def _add(self, name: str, key: object, rate: Rate, amount: int) -> Count | None:
        """Add `amount` to the key's window; None if Redis cannot be reached (no limit)."""
        try:
            count, left_ms = await self._script(
                keys=[f"{self._prefix}limit:{name}:{key}"], args=[amount, rate.window * 1000]
            )
        except UNREACHABLE as exc:
            self._outage.skipped(f"limit {name}", exc)
            return None
        self._outage.ok()
        return Count(int(count), int(left_ms) / 1000)

    async def hit(self, name: str, key: object, rate: Rate | None, amount: int = 1) -> Count | None:
        """Count `amount` events; the key's count afterwards (None: no limit applies)."""
        if rate is None:
            return None
        return await self._add(name, key, rate, amount)

    async def over(self, name: str, key: object, rate: Rate | None) -> Count | None:
        """The key's count if it has reached the limit (without counting), else None."""
        if rate is None:
            return None
        found = await self._add(name, key, rate, 0)
        return found if found is not None and found.count >= rate.count else None

    async def check(self, name: str, key: object, rate: Rate | None, what: str) -> None:
        """Count one event; `RateLimited` ("{what} ({rate}): try again in ...") if that
        goes past the limit."""
        found = await self.hit(name, key, rate)
        if rate is not None and found is not None and found.count > rate.count:
            raise self.refused(name, key, f"{what} ({rate})", found)

    def refused(self, name: str, key: object, what: str, found: Count, shown: str | None = None) -> RateLimited:
        """The error for a refused call, logged (summarised per limit; `shown`: the key as
        logged, when the key itself should not be)."""
        self._refusals.warning(
            "rate_limited", kind=name, key=str(key) if shown is None else shown, count=found.count,
            retry_after=round(found.retry_after, 1),
        )  # fmt: skip
        return RateLimited(f"{what}: {wait_text(found.retry_after)}")


# -- client addresses -------------------------------------------------------------------

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def networks(text: str) -> Networks:
    """'127.0.0.0/8, ::1' -> the networks (ValueError names the entry that is not one)."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from None
    return tuple(found)


def networks_problem(text: str) -> str | None:
    try:
        networks(text)
    except ValueError as exc:
        return str(exc)
    return None


def is_exempt(host: str, exempt: Networks) -> bool:
    """Whether a client address is in one of the exempt networks."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in exempt)


def host_of(peer: str) -> str:
    """The client's IP from a gRPC peer ('ipv4:1.2.3.4:5', 'ipv6:[::1]:5') or a transport
    address ('1.2.3.4:5', '[::1]:5'); unchanged when it is neither (e.g. 'unix:...')."""
    for scheme in ("ipv4:", "ipv6:"):
        peer = peer.removeprefix(scheme)
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else peer
