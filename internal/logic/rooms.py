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

import functools
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.logic import seqs
from gim.internal.logic.delivery import Deliverer, SeqOrder
from gim.internal.logic.devices import OnlineDevice
from gim.internal.logic.message_store import MessageRow
from gim.internal.logic.users import UserClient
from gim.internal.logic.wire import check_fits, now_ms, sender_pb, validate_content
from gim.pkg import broadcast, log
from gim.pkg.errors import bad_request
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2
from gim.pkg.schema import SEQ_OBJECT_ROOM

_log = log.get("rooms")

REPLAY_LIMIT = 500  # kept messages replayed to one subscriber at most (oldest first)
_TRIM_BATCH = 64  # expired members looked at (from the low end) per push
_EXPIRY = 8  # bytes of the expiry prefix of a kept member
NEW_ROOM_CHECK = Callable[[], Awaitable[None]]

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
        users: UserClient,
        deliverer: Deliverer,
        max_content_bytes: int,
        keep_seconds: int,
        keep_bytes: int = 1 << 20,
        replay_bytes: int = 256 << 10,
        new_rooms: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.seqs = RoomSeq(engine)
        self._redis = redis
        self._prefix = prefix
        self.users = users
        self.deliverer = deliverer
        self.max_content_bytes = max_content_bytes
        self.keep_seconds = keep_seconds
        self.keep_bytes = keep_bytes
        self.replay_bytes = replay_bytes
        self.new_rooms = new_rooms  # (user id) -> raises if the user may not create another room
        self._keep_script = redis.register_script(_KEEP)
        self._order = SeqOrder()

    def _key(self, room_id: int) -> str:
        return f"{self._prefix}room:{room_id}"

    async def push(
        self,
        sender_type: int,
        sender_id: int,
        room_id: int,
        message_type: int,
        content: bytes,
        send_time: int,
        is_persist: bool,
    ) -> int:
        """Give the message the room's next seq, keep it if asked, broadcast it; returns the
        seq. A user's push that creates the room passes `new_rooms` first (RoomSeq.next)."""
        if room_id <= 0:
            raise bad_request("room_id must be positive")
        validate_content(message_type, content, self.max_content_bytes)
        check_fits(MessageRow(0, sender_type, sender_id, cx.RT_ROOM, room_id, [], message_type, content, send_time))
        sender = await self._sender(sender_type, sender_id)
        job = self._order.start([room_id])
        try:
            new_room = None
            if sender_type == cx.ST_USER and self.new_rooms is not None:
                new_room = functools.partial(self.new_rooms, sender_id)
            seq = await self.seqs.next(room_id, new_room)
            await self._order.turn(job, {room_id: seq})  # published in seq order
            message = cx.Message(
                sender=sender,
                receiver_type=cx.RT_ROOM,
                receiver_id=room_id,
                message_type=message_type,  # type: ignore[arg-type]
                message_content=content,
                seq=seq,
                send_time=send_time or now_ms(),
                status=cx.MS_NORMAL,
            )
            if is_persist:
                await self._keep(room_id, message)
            payload = connect_int_pb2.PushRoomMsg(room_id=room_id, message_send=cx.MessageSend(message=message))
            receivers = await self._redis.publish(broadcast.room_channel(self._prefix), payload.SerializeToString())
        finally:
            self._order.finish(job)
        _log.debug("room_pushed", room_id=room_id, seq=seq, kept=is_persist, nodes=receivers)
        return seq

    async def push_all(self, message_type: int, content: bytes, send_time: int) -> None:
        """Broadcast to every signed-in connection of every connect node (sender ST_BUSINESS)."""
        validate_content(message_type, content, self.max_content_bytes)
        check_fits(MessageRow(0, cx.ST_BUSINESS, 0, 0, 0, [], message_type, content, send_time))
        message = cx.Message(
            sender=cx.Sender(sender_type=cx.ST_BUSINESS),
            message_type=message_type,  # type: ignore[arg-type]
            message_content=content,
            send_time=send_time or now_ms(),
            status=cx.MS_NORMAL,
        )
        payload = connect_int_pb2.PushAllMsg(message_send=cx.MessageSend(message=message))
        receivers = await self._redis.publish(broadcast.all_channel(self._prefix), payload.SerializeToString())
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
            await self.deliverer.deliver((device, cx.MessageSend(message=m).SerializeToString()) for m in messages)
        _log.debug("room_replayed", room_id=room_id, device_id=device_id, after=seq, count=len(messages))
        return len(messages)

    async def kept(self, room_id: int, after: int) -> list[cx.Message]:
        """Kept, unexpired messages of the room with seq > `after`, in seq order, as many
        from the oldest as fit `replay_bytes` (at least one)."""
        members = await self._redis.zrangebyscore(self._key(room_id), f"({after}", "+inf", start=0, num=REPLAY_LIMIT)
        now = now_ms()
        messages: list[cx.Message] = []
        size = 0
        for member in members:
            if int.from_bytes(member[:_EXPIRY], "big") <= now:
                continue
            size += len(member) - _EXPIRY
            if messages and size > self.replay_bytes:
                _log.info(
                    "room_replay_cut", room_id=room_id, after=after, replayed=len(messages), limit=self.replay_bytes
                )
                break
            messages.append(cx.Message.FromString(member[_EXPIRY:]))
        return messages

    async def _keep(self, room_id: int, message: cx.Message) -> None:
        key = self._key(room_id)
        expires = (now_ms() + self.keep_seconds * 1000).to_bytes(_EXPIRY, "big")
        await self._keep_script(
            keys=[key, f"{key}:bytes"],
            args=[
                expires + message.SerializeToString(),
                message.seq,
                self.keep_seconds + 1,
                self.keep_bytes,
                now_ms(),
                _TRIM_BATCH,
            ],
        )

    async def _sender(self, sender_type: int, sender_id: int) -> cx.Sender:
        users = await self.users.get_many([sender_id]) if sender_type == cx.ST_USER else {}
        return sender_pb(sender_type, sender_id, users)
