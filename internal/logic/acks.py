"""Device acks in Redis: the highest seq each device has confirmed."""

from __future__ import annotations

import redis.asyncio as aioredis

from gim.pkg.batcher import Batcher

# Only ever raise a device's ack: a late or repeated ack never moves it back.
# KEYS[i] is a user's hash; ARGV[2i-1], ARGV[2i] the device and its seq.
_RAISE_ACKS = """
for i, key in ipairs(KEYS) do
  local device, seq = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if seq > tonumber(redis.call('HGET', key, device) or '0') then
    redis.call('HSET', key, device, seq)
  end
end
return 0
"""
ACK_BATCH = 500  # acks that come while one batch is on its way go together, at most


class AckStore:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._raise = redis.register_script(_RAISE_ACKS)
        self._acks: Batcher[tuple[int, int, int], None] = Batcher("acks", self._raise_batch, ACK_BATCH, 1)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}ack:{user_id}"

    async def ack(self, user_id: int, device_id: int, seq: int) -> None:
        await self._acks.submit((user_id, device_id, seq))

    async def _raise_batch(self, acks: list[tuple[int, int, int]]) -> list[None | BaseException]:
        await self._raise(keys=[self._key(u) for u, _, _ in acks], args=[x for _, d, s in acks for x in (d, s)])
        return [None] * len(acks)

    async def highest(self, user_id: int) -> int:
        """The highest seq any of the user's devices has acknowledged."""
        values = await self._redis.hvals(self._key(user_id))
        return max((int(v) for v in values), default=0)

    async def of_device(self, user_id: int, device_id: int) -> int:
        value = await self._redis.hget(self._key(user_id), str(device_id))
        return int(value or 0)
