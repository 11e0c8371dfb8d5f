"""Rooms (read diffusion) and push-all: a seq per room, a short replay window, broadcasts.

A room push is not stored per user. It gets the room's next seq, is kept for a short
while in Redis when `is_persist` (so a subscriber joining with `seq > 0` gets what it
missed replayed), and is published on the room channel; every connect node pushes it
to its own connections in that room (`gim.internal.connect.broadcast`).

Room seq: one row of the `seq` table (object_type SEQ_OBJECT_ROOM), incremented by a
single upsert statement and read back on the same connection. The database keeps it
across Redis restarts, so a seq is never handed out twice; a Redis INCR would be
faster but restart from zero when Redis loses its data, and subscribers asking for
"after seq n" would then miss the new, lower seqs. Every push gets a seq, kept or not.

Kept messages: the sorted set `{prefix}room:{room_id}` scored by seq; each member is
8 bytes of expiry time (ms, big-endian) followed by the serialized `Message`. Expired
members are skipped on replay and trimmed from the low end on every push; the key
itself expires `room_keep_seconds` after the last push.

Bounds (docs/security.md "Limits"): the kept members of a room total at most
`room_keep_bytes` (their byte count is kept beside them in `{prefix}room:{room_id}:bytes`;
a push that goes past it drops the oldest, in the same script); one subscribe replays at
most `room_replay_bytes` (the oldest first: a client that wants the rest subscribes
again after the last seq it got). Who may push: LogicInt callers (business backends) to
any room; any signed-in user through LogicExt, at `room_push_limit`, and a push of a
user that would create a room (its seq row: rows are never removed) counts against
`new_room_limit`, checked inside the transaction that creates the row, so a refused push
leaves none.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.logic import seqs
from gim.internal.logic.checks import validate_content
from gim.internal.logic.ports import Delivery, MessageFormat, Profiles
from gim.internal.logic.seq_order import SeqOrder
from gim.internal.logic.values import (
    BUSINESS,
    Author,
    MessageRow,
    OnlineDevice,
    Outgoing,
    ReceiverType,
    SenderType,
    User,
    now_ms,
)
from gim.pkg import broadcast, log
from gim.pkg.errors import bad_request
from gim.pkg.schema import SEQ_OBJECT_ROOM

_log = log.get("rooms")

REPLAY_LIMIT = 500  # kept messages replayed to one subscriber at most (oldest first)
_TRIM_BATCH = 64  # expired members looked at (from the low end) per push
_EXPIRY = 8  # bytes of the expiry prefix of a kept member
NEW_ROOM_CHECK = Callable[[], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class KeptMessage:
    seq: int
    message: bytes  # as `MessageFormat.room_message` made it


# KEYS: the room's sorted set, its byte count. ARGV: member, seq, key TTL (s), byte cap,
# now (ms), trim batch. Adds the member, drops expired members from the low end (at most
# a batch) and then the oldest while the room keeps more than the cap; returns the bytes
# kept afterwards.
_KEEP = """
local key, bytes_key = KEYS[1], KEYS[2]
local member, cap, now = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', key) == 0 then redis.call('DEL', bytes_key) end
redis.call('ZADD', key, ARGV[2], member)
local kept = redis.call('INCRBY', bytes_key, #member)
local function expiry(m)
  local t = 0
  for i = 1, 8 do t = t * 256 + string.byte(m, i) end
  return t
end
for _, m in ipairs(redis.call('ZRANGE', key, 0, tonumber(ARGV[6]) - 1)) do
  if expiry(m) > now then break end
  redis.call('ZREM', key, m)
  kept = redis.call('DECRBY', bytes_key, #m)
end
while kept > cap do
  local oldest = redis.call('ZRANGE', key, 0, 0)[1]
  if not oldest then break end
  redis.call('ZREM', key, oldest)
  kept = redis.call('DECRBY', bytes_key, #oldest)
end
redis.call('EXPIRE', key, ARGV[3])
redis.call('EXPIRE', bytes_key, ARGV[3])
return kept
"""


class RoomSeq:
    """The next seq of a room, atomic across any number of logic nodes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def next(self, room_id: int, new_room: NEW_ROOM_CHECK | None = None) -> int:
        """`new_room`: awaited when this push creates the room's row (its seq is 1), inside
        the transaction: if it raises, the row is not created."""
        async with self._engine.begin() as conn:
            seq = (await seqs.allocate(conn, SEQ_OBJECT_ROOM, {room_id: 1}))[room_id]
            if seq == 1 and new_room is not None:
                await new_room()
            return seq


class RoomService:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        prefix: str,
        profiles: Profiles,
        delivery: Delivery,
        format: MessageFormat,
        max_content_bytes: int,
        keep_seconds: int,
        keep_bytes: int = 1 << 20,
        replay_bytes: int = 256 << 10,
        new_rooms: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.seqs = RoomSeq(engine)
        self._redis = redis
        self._prefix = prefix
        self._profiles = profiles
        self._delivery = delivery
        self._format = format
        self.max_content_bytes = max_content_bytes
        self.keep_seconds = keep_seconds
        self.keep_bytes = keep_bytes
        self.replay_bytes = replay_bytes
        self.new_rooms = new_rooms  # (user id) -> raises if the user may not create another room
        self._keep_script = redis.register_script(_KEEP)
        self._order = SeqOrder()

    def _key(self, room_id: int) -> str:
        return f"{self._prefix}room:{room_id}"

    async def push(self, author: Author, message: Outgoing) -> int:
        """Give the message (to the room `message.receiver_id`) the room's next seq, keep it
        if asked, broadcast it; returns the seq. A user's push that creates the room passes
        `new_rooms` first (RoomSeq.next)."""
        room_id = message.receiver_id
        if room_id <= 0:
            raise bad_request("room_id must be positive")
        validate_content(message.message_type, message.content, self.max_content_bytes)
        row = MessageRow(
            0, author.sender_type, author.sender_id, ReceiverType.ROOM, room_id, [], message.message_type,
            message.content, message.send_time,
        )  # fmt: skip
        self._format.check_fits(row)
        sender = await self._sender(author)
        job = self._order.start([room_id])
        try:
            new_room = None
            if author.sender_type == SenderType.USER and self.new_rooms is not None:
                new_room = functools.partial(self.new_rooms, author.sender_id)
            seq = await self.seqs.next(room_id, new_room)
            await self._order.turn(job, {room_id: seq})  # published in seq order
            kept = self._format.room_message(dataclasses.replace(row, send_time=row.send_time or now_ms()), sender, seq)
            if message.is_persist:
                await self._keep(room_id, seq, kept)
            payload = self._format.room_broadcast(room_id, kept)
            receivers = await self._redis.publish(broadcast.room_channel(self._prefix), payload)
        finally:
            self._order.finish(job)
        _log.debug("room_pushed", room_id=room_id, seq=seq, kept=message.is_persist, nodes=receivers)
        return seq

    async def push_all(self, message_type: int, content: bytes, send_time: int) -> None:
        """Broadcast to every signed-in connection of every connect node (sender ST_BUSINESS)."""
        validate_content(message_type, content, self.max_content_bytes)
        row = MessageRow(0, BUSINESS.sender_type, 0, 0, 0, [], message_type, content, send_time)
        self._format.check_fits(row)
        payload = self._format.all_broadcast(dataclasses.replace(row, send_time=send_time or now_ms()))
        receivers = await self._redis.publish(broadcast.all_channel(self._prefix), payload)
        _log.debug("pushed_all", nodes=receivers)

    async def subscribe(self, user_id: int, device_id: int, room_id: int, seq: int, conn_addr: str) -> int:
        """Replay the kept messages of the room after `seq` to the device; returns how many."""
        if room_id <= 0 or seq < 0 or user_id <= 0 or device_id <= 0:
            raise bad_request("user_id, device_id and room_id must be positive, seq not negative")
        if not conn_addr:
            raise bad_request("conn_addr is required")
        messages = await self.kept(room_id, seq)
        if messages:
            device = OnlineDevice(device_id, user_id, conn_addr)
            await self._delivery.deliver((device, self._format.message_send(m.message)) for m in messages)
        _log.debug("room_replayed", room_id=room_id, device_id=device_id, after=seq, count=len(messages))
        return len(messages)

    async def kept(self, room_id: int, after: int) -> list[KeptMessage]:
        """Kept, unexpired messages of the room with seq > `after`, in seq order, as many
        from the oldest as fit `replay_bytes` (at least one)."""
        members = cast(
            "list[tuple[bytes, float]]",  # the client answers bytes (no decode_responses), scores as floats
            await self._redis.zrangebyscore(
                self._key(room_id), f"({after}", "+inf", start=0, num=REPLAY_LIMIT, withscores=True
            ),
        )
        now = now_ms()
        messages: list[KeptMessage] = []
        size = 0
        for member, seq in members:
            if int.from_bytes(member[:_EXPIRY], "big") <= now:
                continue
            size += len(member) - _EXPIRY
            if messages and size > self.replay_bytes:
                _log.info(
                    "room_replay_cut", room_id=room_id, after=after, replayed=len(messages), limit=self.replay_bytes
                )
                break
            messages.append(KeptMessage(int(seq), member[_EXPIRY:]))
        return messages

    async def _keep(self, room_id: int, seq: int, message: bytes) -> None:
        key = self._key(room_id)
        expires = (now_ms() + self.keep_seconds * 1000).to_bytes(_EXPIRY, "big")
        await self._keep_script(
            keys=[key, f"{key}:bytes"],
            args=[expires + message, seq, self.keep_seconds + 1, self.keep_bytes, now_ms(), _TRIM_BATCH],
        )

    async def _sender(self, author: Author) -> User | None:
        if author.sender_type != SenderType.USER:
            return None
        return (await self._profiles.get_many([author.sender_id])).get(author.sender_id)
