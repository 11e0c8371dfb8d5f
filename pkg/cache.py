"""Redis caches in front of the database, safe against stale fills.

Cache-aside with a generation counter per entry: a writer commits to the database, then
`invalidate`s (bumps the entry's generation and deletes the value). A reader that misses
notes the generation *before* it reads the database and fills the value only if the
generation is still the same, so a reader that read the old row can never put it back
after a writer's invalidation. Values are bytes; callers choose the encoding.

The same key names are used by every service (business invalidates the user entries
that logic reads), so the kinds live here.

Redis unreachable (see `redis_outage`): a read is a miss (the loader answers from the
database), a fill is skipped, and an invalidation is owed: kept in this process and done
before its next read or invalidation that reaches Redis, so that an entry that outlived
the outage (Redis unreachable, not emptied) cannot hide a write made meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

import redis.asyncio as aioredis

from gim.pkg import log, metrics
from gim.pkg.batcher import Batcher
from gim.pkg.redis_outage import UNREACHABLE, RedisOutage

_log = log.get("cache")

KIND_USER = "user"  # user_ext.User, filled by logic from UserInt.GetUsers
KIND_ONLINE = "online"  # the user's online devices
KIND_GROUP = "group"  # one group's row
KIND_MEMBERS = "members"  # one group's member rows

# Set the value only if nobody invalidated the entry since the reader looked.
_FILL = """
local gen = redis.call('GET', KEYS[2]) or ''
if gen == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
"""

# Each entry's generation bumped (kept GEN_TTL = ARGV[1] seconds) and its value deleted:
# one command for the lot, where a pipeline takes three each (client CPU per command).
_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  redis.call('DEL', KEYS[i + 1])
end
return #KEYS / 2
"""
INVALIDATE_CHUNK = 1000  # entries per script call at most (Redis runs a script alone)

GEN_TTL = 86400  # far longer than any database read between a reader's look and fill
MGET_KEYS = 2000  # keys of the concurrent reads that go together in one MGET, at most
# Once reads come concurrently, an MGET starts this long after the previous one at the
# soonest (`Batcher` spacing): each command costs the client about the same whatever its
# keys, and every send reads profiles and routes, so without a pause a busy logic sent
# about one small MGET a send.
READ_SPACING = 0.005
MAX_OWED = 100_000  # invalidations kept while Redis is unreachable (past that: dropped)

Loader = Callable[[list[int]], Awaitable[dict[int, bytes]]]
T = TypeVar("T")


class Decoded(Generic[T]):
    """Cached values decoded once per process: the same bytes give the same (immutable)
    object. Keyed by the bytes themselves, so a changed entry is decoded afresh; a group
    send reads its 500 members' entries again and again, unchanged. At most `max_bytes`
    of encoded values are remembered (then all are forgotten at once: simple, and rare)."""

    def __init__(self, decode: Callable[..., T], max_bytes: int = 16 << 20) -> None:
        self._decode = decode
        self._max_bytes = max_bytes
        self._bytes = 0
        self._memo: dict[object, T] = {}

    def __call__(self, raw: bytes, *context: object) -> T:
        """`decode(raw, *context)`; `context`: what else the result depends on (in the key)."""
        key = (raw, *context) if context else raw
        found = self._memo.get(key)
        if found is None:
            if self._bytes + len(raw) > self._max_bytes:
                self._memo.clear()
                self._bytes = 0
            found = self._memo[key] = self._decode(raw, *context)
            self._bytes += len(raw)
        return found


class Cache:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._fill = redis.register_script(_FILL)
        self._invalidate_script = redis.register_script(_INVALIDATE)
        # reads that come while one is on its way go together in the next MGET
        self._reads: Batcher[list[str], list[bytes | None]] = Batcher(
            "cache_reads", self._mget, MGET_KEYS, 1, size=len, spacing=READ_SPACING
        )
        self._outage = RedisOutage("cache")
        self._owed: set[tuple[str, int]] = set()  # invalidations Redis did not take

    async def _mget(self, reads: list[list[str]]) -> list[list[bytes | None] | BaseException]:
        try:
            values = await self._redis.mget([key for keys in reads for key in keys])
        except UNREACHABLE as exc:
            self._outage.skipped("read", exc)
            return [[None] * len(keys) for keys in reads]
        self._outage.ok()
        out: list[list[bytes | None] | BaseException] = []
        start = 0
        for keys in reads:
            out.append(values[start : start + len(keys)])  # type: ignore[arg-type]  # clients never decode: bytes
            start += len(keys)
        return out

    def _key(self, kind: str, id_: int) -> str:
        return f"{self._prefix}cache:{kind}:{id_}"

    def _gen_key(self, kind: str, id_: int) -> str:
        return f"{self._prefix}cache:{kind}:{id_}:gen"

    async def load(self, kind: str, ids: Iterable[int], loader: Loader) -> dict[int, bytes]:
        """The cached values of `ids`; misses come from `loader` (absent ids stay uncached)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        if self._owed:
            await self._invalidate(set())
        values = await self._reads.submit([self._key(kind, i) for i in wanted])
        found = {id_: value for id_, value in zip(wanted, values, strict=True) if value is not None}
        missed = [id_ for id_ in wanted if id_ not in found]
        metrics.count_lookups(kind, len(found), len(missed))
        if missed:
            # the generations, read before the database: a fill after an invalidation fails
            gen_values = await self._reads.submit([self._gen_key(kind, i) for i in missed])
            gens = {id_: gen or b"" for id_, gen in zip(missed, gen_values, strict=True)}
            loaded = await loader(missed)
            if loaded and not self._outage.down:
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for id_, value in loaded.items():
                            await self._fill(
                                keys=[self._key(kind, id_), self._gen_key(kind, id_)],
                                args=[value, gens[id_], self._ttl],
                                client=pipe,
                            )
                        await pipe.execute()
                except UNREACHABLE as exc:
                    self._outage.skipped("fill", exc)
            found.update(loaded)
        return found

    async def invalidate(self, kind: str, ids: Iterable[int]) -> None:
        """Call after the database write has committed."""
        await self._invalidate({(kind, id_) for id_ in ids})

    async def _invalidate(self, entries: set[tuple[str, int]]) -> None:
        """Invalidate `entries` and whatever is owed; what Redis does not take is owed."""
        entries |= self._owed
        self._owed = set()
        if not entries:
            return
        keys = [key for kind, id_ in entries for key in (self._gen_key(kind, id_), self._key(kind, id_))]
        try:
            for start in range(0, len(keys), 2 * INVALIDATE_CHUNK):
                await self._invalidate_script(keys=keys[start : start + 2 * INVALIDATE_CHUNK], args=[GEN_TTL])
        except UNREACHABLE as exc:
            self._outage.skipped("invalidate", exc)
            self._owe(entries)  # all of them: invalidating one twice is harmless
            return
        self._outage.ok()

    def _owe(self, entries: set[tuple[str, int]]) -> None:
        self._owed |= entries
        if len(self._owed) > MAX_OWED:
            # the entries stay stale until their time-to-live ends, as a bound
            _log.warning("cache_invalidations_dropped", count=len(self._owed), stale_for_at_most=self._ttl)
            self._owed = set()
