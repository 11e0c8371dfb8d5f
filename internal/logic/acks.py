"""Device acks: the highest seq each device has confirmed. The database (`device_ack`) is
their home, Redis their cache and fast path.

Acks are hot (one per message a device receives), so an ack raises the device's entry in
Redis at once (concurrent acks go together in one script call) and is written to the
database behind it: every `FLUSH_INTERVAL` seconds the acks that came meanwhile, one per
device (the highest), in transactions of `FLUSH_ROWS`. Both writes only ever raise: a
late or repeated ack never moves a device back.

A read trusts Redis when it holds the user's complete entry (the hash has the `_` field,
set when it was filled from the database); otherwise -- Redis emptied, evicted or
unreachable -- it reads the database, adds what Redis and this node's unwritten acks
know, and fills Redis again. Acks that find Redis unreachable are raised there by the
next flush. Concurrent reads (a crowd of devices syncing right after signing in) go
together: one Redis pipeline, one database query and one fill for all their users.

What a crash can lose: the acks of a logic node's last write-behind interval, when Redis
loses them too. A device then syncs from its previous ack and receives again a few
messages it already has; clients drop those by seq.
"""

from __future__ import annotations

import asyncio
from typing import cast

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.pkg import db, log
from gim.pkg.batcher import Batcher
from gim.pkg.redis_outage import UNREACHABLE, RedisOutage
from gim.pkg.schema import device_ack

_log = log.get("acks")

# KEYS[i] is a user's hash; ARGV[1] its time to live, ARGV[2i], ARGV[2i+1] a device and
# its seq: raise the device's entry (only ever raise).
_RAISE_ACKS = """
for i, key in ipairs(KEYS) do
  local device, seq = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if seq > tonumber(redis.call('HGET', key, device) or '0') then
    redis.call('HSET', key, device, seq)
  end
  redis.call('EXPIRE', key, ARGV[1])
end
return 0
"""
# KEYS[i] is a user's hash, ARGV[1] their time to live, then for each hash the number of
# (device, seq) pairs read from the database and the pairs: raise each, mark the hash complete.
_FILL_ACKS = """
local at = 2
for _, key in ipairs(KEYS) do
  local pairs_ = tonumber(ARGV[at])
  for i = at + 1, at + 2 * pairs_, 2 do
    local device, seq = ARGV[i], tonumber(ARGV[i + 1])
    if seq > tonumber(redis.call('HGET', key, device) or '0') then
      redis.call('HSET', key, device, seq)
    end
  end
  at = at + 1 + 2 * pairs_
  redis.call('HSET', key, '_', '1')
  redis.call('EXPIRE', key, ARGV[1])
end
return 0
"""
COMPLETE = b"_"  # the field that marks a user's hash as filled from the database
ACK_BATCH = 500  # acks that come while one batch is on its way go together, at most
READ_BATCH = 500  # users whose acks are read together, at most
READ_CALLS = 2  # batches of reads on their way at once
ACK_TTL = 7 * 86400  # a user's hash stays in Redis this long after the last ack or fill
FLUSH_INTERVAL = 1.0  # seconds between write-behind flushes to the database
FLUSH_ROWS = 1000  # device acks written in one transaction, at most

_c = device_ack.c
# a device's row is only ever raised
_RAISE = db.upsert(device_ack, ("user_id", "device_id"), lambda p: {"seq": p.greatest(_c.seq, p.new.seq)})

Acks = dict[int, dict[int, int]]  # user -> device -> seq
Ack = tuple[int, int, int]  # (user, device, seq)


class AckStore:
    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis, prefix: str) -> None:
        self._engine = engine
        self._redis = redis
        self._prefix = prefix
        self._raise = redis.register_script(_RAISE_ACKS)
        self._fill = redis.register_script(_FILL_ACKS)
        # each request a list of (user, device, seq): one MessageACKs call's acks go as one
        self._acks: Batcher[list[Ack], None] = Batcher("acks", self._raise_batch, ACK_BATCH, 1, size=len)
        self._reads: Batcher[int, dict[int, int]] = Batcher("ack_reads", self._read_batch, READ_BATCH, READ_CALLS)
        self._outage = RedisOutage("acks")
        self._unwritten: Acks = {}  # not yet in the database
        self._unraised: Acks = {}  # not in Redis: it was unreachable
        self._flusher: asyncio.Task[None] | None = None

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}ack:{user_id}"

    async def ack(self, user_id: int, device_id: int, seq: int) -> None:
        await self.ack_many([(user_id, device_id, seq)])

    async def ack_many(self, acks: list[Ack]) -> None:
        """Raise each (user, device, seq): in Redis together with the acks that come
        meanwhile, in the database by the next flush."""
        for user_id, device_id, seq in acks:
            _raise_in(self._unwritten, user_id, device_id, seq)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        await self._acks.submit(acks)

    async def _raise_batch(self, requests: list[list[Ack]]) -> list[None | BaseException]:
        acks = [ack for request in requests for ack in request]
        try:
            await self._raise(
                keys=[self._key(u) for u, _, _ in acks], args=[ACK_TTL, *(x for _, d, s in acks for x in (d, s))]
            )
        except UNREACHABLE as exc:
            self._outage.skipped("ack", exc)
            for user_id, device_id, seq in acks:
                _raise_in(self._unraised, user_id, device_id, seq)
        else:
            self._outage.ok()
        return [None] * len(requests)

    async def highest(self, user_id: int) -> int:
        """The highest seq any of the user's devices has acknowledged."""
        return max((await self._of_user(user_id)).values(), default=0)

    async def of_device(self, user_id: int, device_id: int) -> int:
        return (await self._of_user(user_id)).get(device_id, 0)

    async def _of_user(self, user_id: int) -> dict[int, int]:
        """Each of the user's devices' ack (read together with concurrent reads)."""
        return await self._reads.submit(user_id)

    async def _read_batch(self, user_ids: list[int]) -> list[dict[int, int] | BaseException]:
        users = list(dict.fromkeys(user_ids))
        cached = dict(zip(users, await self._cached(users), strict=True))
        acks = {
            u: _merged(_parsed(entry), self._unwritten.get(u, {}), self._unraised.get(u, {}))
            for u, entry in cached.items()
        }
        missing = [u for u, entry in cached.items() if not (entry and COMPLETE in entry)]
        if missing:
            stored = await self._stored(missing)
            for user_id, by_device in stored.items():
                for device_id, seq in _parsed(cached[user_id]).items():  # acked through another node, not yet written
                    if seq > by_device.get(device_id, 0):
                        _raise_in(self._unwritten, user_id, device_id, seq)
                acks[user_id] = _merged(by_device, acks[user_id])
            await self._fill_users({u: stored[u] for u in missing if cached[u] is not None})
        return [acks[u] for u in user_ids]

    async def _cached(self, users: list[int]) -> list[dict[bytes, bytes] | None]:
        """The users' hashes in Redis (bytes: no decode_responses); None each if unreachable."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in users:
                    pipe.hgetall(self._key(user_id))
                entries = cast("list[dict[bytes, bytes]]", await pipe.execute())
        except UNREACHABLE as exc:
            self._outage.skipped("read", exc)
            return [None] * len(users)
        self._outage.ok()
        return list(entries)

    async def _fill_users(self, stored: dict[int, dict[int, int]]) -> None:
        """Put what the database holds into the users' hashes in Redis, marked complete."""
        if not stored:
            return
        args: list[int] = [ACK_TTL]
        for by_device in stored.values():
            args.append(len(by_device))
            args.extend(x for d, s in by_device.items() for x in (d, s))
        try:
            await self._fill(keys=[self._key(u) for u in stored], args=args)
        except UNREACHABLE as exc:
            self._outage.skipped("fill", exc)

    async def _stored(self, user_ids: list[int]) -> dict[int, dict[int, int]]:
        """Each user's device acks in the database (a user without any: empty)."""
        stored: dict[int, dict[int, int]] = {u: {} for u in user_ids}
        async with db.reading(self._engine) as conn:
            rows = await conn.execute(sa.select(_c.user_id, _c.device_id, _c.seq).where(_c.user_id.in_(user_ids)))
            for user_id, device_id, seq in rows:
                stored[int(user_id)][int(device_id)] = int(seq)
        return stored

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:  # a bug, not an outage (those flush() keeps for later)
                _log.exception("ack_flush_failed")

    async def flush(self) -> None:
        """Write the acks that came since the last flush to the database, and raise in
        Redis those that found it unreachable. What fails stays for the next flush."""
        unwritten, self._unwritten = self._unwritten, {}
        rows = sorted((u, d, s) for u, by_device in unwritten.items() for d, s in by_device.items())  # one lock order
        written = 0
        try:
            for start in range(0, len(rows), FLUSH_ROWS):
                chunk = rows[start : start + FLUSH_ROWS]
                async with self._engine.begin() as conn:
                    await conn.execute(
                        _RAISE.for_(conn), [{"user_id": u, "device_id": d, "seq": s} for u, d, s in chunk]
                    )
                written += len(chunk)
        except BaseException as exc:
            for user_id, device_id, seq in rows[written:]:
                _raise_in(self._unwritten, user_id, device_id, seq)
            if not isinstance(exc, Exception):
                raise
            _log.warning("acks_not_written", devices=len(rows) - written, error=str(exc) or type(exc).__name__)
        if self._unraised:
            unraised, self._unraised = self._unraised, {}
            await self._raise_batch([[(u, d, s) for u, by_device in unraised.items() for d, s in by_device.items()]])

    async def close(self) -> None:
        """Stop the write-behind and write what is left."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await self.flush()


def _raise_in(acks: Acks, user_id: int, device_id: int, seq: int) -> None:
    by_device = acks.setdefault(user_id, {})
    if seq > by_device.get(device_id, 0):
        by_device[device_id] = seq


def _parsed(entry: dict[bytes, bytes] | None) -> dict[int, int]:
    """A user's hash in Redis as device -> seq (without the completeness mark)."""
    return {int(d): int(s) for d, s in (entry or {}).items() if d != COMPLETE}


def _merged(*sources: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for source in sources:
        for device_id, seq in source.items():
            if seq > out.get(device_id, 0):
                out[device_id] = seq
    return out
