"""Sign-in tokens in Redis: random, bound to (user, device), expiring."""

from __future__ import annotations

import hmac
import secrets

import redis.asyncio as aioredis

from gim.pkg.errors import GimError, unauthorized


class TokenStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    def _key(self, user_id: int, device_id: int) -> str:
        return f"{self._prefix}token:{user_id}:{device_id}"

    async def issue(self, user_id: int, device_id: int) -> str:
        """A new token for this user on this device; an older one stops working."""
        token = secrets.token_urlsafe(24)
        await self._redis.set(self._key(user_id, device_id), token, ex=self._ttl)
        return token

    async def check_many(self, auths: list[tuple[int, int, str]]) -> list[GimError | None]:
        """For each (user, device, token): None if `token` is the live token of (user,
        device), else the 10000 to answer; one read for all."""
        stored = await self._redis.mget([self._key(u, d) for u, d, _ in auths])
        return [_mismatch(value, token) for value, (_, _, token) in zip(stored, auths, strict=True)]


def _mismatch(stored: bytes | None, token: str) -> GimError | None:
    if stored is None:
        return unauthorized("token expired or unknown, sign in again")
    if not hmac.compare_digest(stored, token.encode()):
        return unauthorized("wrong token, sign in again")
    return None
