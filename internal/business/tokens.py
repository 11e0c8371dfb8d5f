"""Sign-in tokens: random, bound to (user, device), expiring. The database is their home
(`device_token`, one row per user and device), Redis their cache.

Neither store holds a token that works: both keep its SHA-256 digest. `issue` writes the
row (concurrent sign-ins in one transaction), then sets the Redis entry with the same
time to live. `check_many` reads Redis, one MGET for the whole batch; whatever Redis does
not confirm -- no entry (expired, evicted, Redis emptied or unreachable) or another one (a
token issued while Redis was unreachable) -- the database decides, one query for the rest
of the batch. A token found there goes back into Redis, only where Redis has no entry
(SET NX): a fill can never overwrite a newer token that `issue` set meanwhile. Redis
unreachable: checks and sign-ins go on with the database alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.pkg import db, log
from gim.pkg.batcher import Batcher
from gim.pkg.errors import GimError, bad_token
from gim.pkg.redis_outage import UNREACHABLE, RedisOutage
from gim.pkg.schema import device_token

_log = log.get("tokens")

WRITE_BATCH = 500  # sign-ins whose tokens are written in one transaction, at most
DIGEST_LEN = 64  # hex SHA-256; a shorter Redis value is a raw token set before digests

_c = device_token.c
_UPSERT = db.upsert(
    device_token,
    ("user_id", "device_id"),
    lambda p: {"token_sha256": p.new.token_sha256, "expire_time": p.new.expire_time},
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class _Issued:
    user_id: int
    device_id: int
    token_sha256: str
    expire_time: int  # Unix seconds


class TokenStore:
    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self._engine = engine
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        # one worker: batches commit, and then set Redis, in the order they were issued
        self._writes: Batcher[_Issued, None] = Batcher("token_writes", self._write, WRITE_BATCH, 1)
        self._outage = RedisOutage("tokens")

    def _key(self, user_id: int, device_id: int) -> str:
        return f"{self._prefix}token:{user_id}:{device_id}"

    async def issue(self, user_id: int, device_id: int) -> str:
        """A new token for this user on this device; an older one stops working."""
        token = secrets.token_urlsafe(24)
        await self._writes.submit(_Issued(user_id, device_id, digest(token), int(time.time()) + self._ttl))
        return token

    async def _write(self, batch: list[_Issued]) -> list[None | BaseException]:
        latest = {(i.user_id, i.device_id): i for i in batch}  # signed in twice at once: the last wins
        async with self._engine.begin() as conn:
            await conn.execute(_UPSERT.for_(conn), [dataclasses.asdict(i) for i in latest.values()])
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in latest.values():
                    pipe.set(self._key(i.user_id, i.device_id), i.token_sha256, ex=self._ttl)
                await pipe.execute()
        except UNREACHABLE as exc:
            self._outage.skipped("issue", exc)  # the database has it: checks find it there
        else:
            self._outage.ok()
        return [None] * len(batch)

    async def check_many(self, auths: list[tuple[int, int, str]]) -> list[GimError | None]:
        """For each (user, device, token): None if `token` is the live token of (user,
        device), else the 10000 to answer. One Redis read for all; the database only for
        those Redis does not confirm."""
        try:
            keys = [self._key(u, d) for u, d, _ in auths]
            cached: list[bytes | None] = await self._redis.mget(keys)  # type: ignore[assignment]  # bytes: never decoded
        except UNREACHABLE as exc:
            self._outage.skipped("check", exc)
            cached = [None] * len(auths)
        else:
            self._outage.ok()
        results: list[GimError | None] = [None] * len(auths)
        unsure = [
            i for i, (value, (_, _, token)) in enumerate(zip(cached, auths, strict=True)) if not _matches(value, token)
        ]
        if unsure:
            await self._check_in_database([auths[i] for i in unsure], [cached[i] for i in unsure], unsure, results)
        return results

    async def _check_in_database(
        self,
        auths: list[tuple[int, int, str]],
        cached: list[bytes | None],
        at: list[int],
        results: list[GimError | None],
    ) -> None:
        query = sa.select(_c.user_id, _c.device_id, _c.token_sha256, _c.expire_time).where(
            _c.user_id.in_(sorted({u for u, _, _ in auths}))
        )
        async with db.reading(self._engine) as conn:
            rows = {(int(u), int(d)): (str(sha), int(expire)) for u, d, sha, expire in await conn.execute(query)}
        now = int(time.time())
        fills: dict[str, tuple[str, int]] = {}  # Redis key -> (digest, seconds left)
        stale: list[str] = []  # Redis keys holding another token than the database
        for (user_id, device_id, token), value, i in zip(auths, cached, at, strict=True):
            sha, expire = rows.get((user_id, device_id), ("", 0))
            if expire > now and hmac.compare_digest(sha, digest(token)):
                key = self._key(user_id, device_id)
                if value is None:
                    fills[key] = (sha, expire - now)
                else:
                    stale.append(key)
            else:  # wrong, expired or unknown: the same answer, so that none can be told apart
                results[i] = bad_token()
        if (fills or stale) and not self._outage.down:
            await self._refill(fills, stale)

    async def _refill(self, fills: dict[str, tuple[str, int]], stale: list[str]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, (sha, seconds) in fills.items():
                    pipe.set(key, sha, ex=seconds, nx=True)
                if stale:
                    pipe.delete(*stale)  # the next check fills them from the database
                await pipe.execute()
        except UNREACHABLE as exc:
            self._outage.skipped("fill", exc)
        else:
            _log.debug("tokens_refilled", filled=len(fills), stale=len(stale))


def _matches(stored: bytes | None, token: str) -> bool:
    if stored is None:
        return False
    if len(stored) == DIGEST_LEN:
        return hmac.compare_digest(stored, digest(token).encode())
    return hmac.compare_digest(stored, token.encode())  # set by an older version: expires with its ttl
