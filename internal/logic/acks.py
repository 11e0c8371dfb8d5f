"""Device acks in Redis: the highest seq each device has confirmed."""

from __future__ import annotations

import redis.asyncio as aioredis

# Only ever raise a device's ack: a late or repeated ack never moves it back.
_RAISE_ACK = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


class AckStore:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._raise = redis.register_script(_RAISE_ACK)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}ack:{user_id}"

    async def ack(self, user_id: int, device_id: int, seq: int) -> None:
        await self._raise(keys=[self._key(user_id)], args=[device_id, seq])

    async def highest(self, user_id: int) -> int:
        """The highest seq any of the user's devices has acknowledged."""
        values = await self._redis.hvals(self._key(user_id))
        return max((int(v) for v in values), default=0)

    async def of_device(self, user_id: int, device_id: int) -> int:
        value = await self._redis.hget(self._key(user_id), str(device_id))
        return int(value or 0)
