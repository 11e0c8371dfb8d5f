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
"""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.logic import seqs
from gim.internal.logic.delivery import Deliverer, SeqOrder
from gim.internal.logic.devices import OnlineDevice
from gim.internal.logic.users import UserClient
from gim.internal.logic.message_store import MessageRow
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


class RoomSeq:
    """The next seq of a room, atomic across any number of logic nodes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def next(self, room_id: int) -> int:
        async with self._engine.begin() as conn:
            return (await seqs.allocate(conn, SEQ_OBJECT_ROOM, {room_id: 1}))[room_id]


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
    ) -> None:
        self.seqs = RoomSeq(engine)
        self._redis = redis
        self._prefix = prefix
        self.users = users
        self.deliverer = deliverer
        self.max_content_bytes = max_content_bytes
        self.keep_seconds = keep_seconds
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
        """Give the message the room's next seq, keep it if asked, broadcast it; returns the seq."""
        if room_id <= 0:
            raise bad_request("room_id must be positive")
        validate_content(message_type, content, self.max_content_bytes)
        check_fits(MessageRow(0, sender_type, sender_id, cx.RT_ROOM, room_id, [], message_type, content, send_time))
        sender = await self._sender(sender_type, sender_id)
        job = self._order.start([room_id])
        try:
            seq = await self.seqs.next(room_id)
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
        """Kept, unexpired messages of the room with seq > `after`, in seq order."""
        members = await self._redis.zrangebyscore(self._key(room_id), f"({after}", "+inf", start=0, num=REPLAY_LIMIT)
        now = now_ms()
        return [
            cx.Message.FromString(member[_EXPIRY:])
            for member in members
            if int.from_bytes(member[:_EXPIRY], "big") > now
        ]

    async def _keep(self, room_id: int, message: cx.Message) -> None:
        key = self._key(room_id)
        expires = (now_ms() + self.keep_seconds * 1000).to_bytes(_EXPIRY, "big")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {expires + message.SerializeToString(): message.seq})
            pipe.expire(key, self.keep_seconds + 1)
            pipe.zrange(key, 0, _TRIM_BATCH - 1)
            *_, oldest = await pipe.execute()
        now = now_ms()
        expired = [m for m in oldest if int.from_bytes(m[:_EXPIRY], "big") <= now]
        if expired:
            await self._redis.zrem(key, *expired)

    async def _sender(self, sender_type: int, sender_id: int) -> cx.Sender:
        users = await self.users.get_many([sender_id]) if sender_type == cx.ST_USER else {}
        return sender_pb(sender_type, sender_id, users)
