"""Room and push-all broadcasts arriving over Redis pub/sub, pushed to local connections.

Each payload is decoded once and its Output encoded once; the same bytes are handed to
every target connection without awaiting any of them (a transport only queues), so a
slow connection never delays the others. Broadcasts already received together (a busy
room, a node behind) are pushed together: one send per connection for all of them
(`sockets.held_writes`). If Redis drops the subscription, it is logged
and made again with a growing delay; messages published meanwhile are lost (rooms are
not synced offline; a subscriber may re-subscribe with its last seq to get the kept
ones replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.retry import Retry

from gim.internal.connect.registry import Registry
from gim.internal.connect.sockets import held_writes
from gim.pkg import broadcast, log
from gim.pkg.limits import FRAME_MAX
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2
from gim.pkg.protocol.packets import Encoded, output

_log = log.get("broadcast")

RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
BATCH = 64  # broadcasts already received that are pushed together, at most


class BroadcastSubscriber:
    def __init__(self, redis_url: str, prefix: str, registry: Registry, name: str) -> None:
        # No retries inside redis-py: a dropped connection surfaces here, is logged,
        # and the subscription is made again on a fresh connection.
        self._redis = aioredis.Redis.from_url(
            redis_url, client_name=name, retry=Retry(NoBackoff(), 0), health_check_interval=30
        )
        self.name = name
        self.room_channel = broadcast.room_channel(prefix).encode()
        self.all_channel = broadcast.all_channel(prefix).encode()
        self.registry = registry
        self.subscriptions = 0  # times (re)subscribed
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> None:
        """Subscribe in the background; wait (bounded) for the first subscription."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self.wait_subscriptions(1), timeout)
        except TimeoutError:
            _log.warning("broadcast_not_subscribed_yet", timeout=timeout)

    async def wait_subscriptions(self, count: int) -> None:
        """Until the subscription has been made `count` times in all."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.subscriptions >= count)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # its end; a cancellation of stop() itself still ends stop()
        await self._redis.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.room_channel, self.all_channel)
                failures = 0
                async with self._changed:
                    self.subscriptions += 1
                    self._changed.notify_all()
                _log.info("broadcast_subscribed", times=self.subscriptions)
                while True:
                    self.dispatch_all(await _received(pubsub))
            except (aioredis.RedisError, OSError) as exc:
                _log.warning("broadcast_disconnected", error=str(exc))
            except Exception:  # a bug, not Redis: keep the node's broadcasts alive anyway
                _log.exception("broadcast_failed")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose unannotated
            await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
            failures += 1

    def dispatch_all(self, messages: list[dict[str, Any]]) -> None:
        """Push each pub/sub message in order; a connection's pushes go in one send."""
        with held_writes():
            for message in messages:
                if message["type"] == "message":
                    self.dispatch(message["channel"], message["data"])

    def dispatch(self, channel: bytes, data: bytes) -> int:
        """Push one payload to its local targets; returns how many connections got it."""
        try:
            if channel == self.room_channel:
                room = connect_int_pb2.PushRoomMsg.FromString(data)
                targets, message_send = self.registry.members(room.room_id), room.message_send
            else:
                everyone = connect_int_pb2.PushAllMsg.FromString(data)
                targets, message_send = self.registry.signed_in(), everyone.message_send
        except DecodeError as exc:
            _log.warning("broadcast_bad_payload", channel=channel.decode(errors="replace"), error=str(exc))
            return 0
        if not targets:
            return 0
        body = output(cx.PT_MESSAGE, data=message_send.SerializeToString())
        if len(body) > FRAME_MAX:
            _log.warning("broadcast_too_large", size=len(body))
            return 0
        out = Encoded(body)
        for session in targets:
            session.push_encoded(out)
        return len(targets)


async def _received(pubsub: PubSub) -> list[dict[str, Any]]:
    """The next message, waited for, and those already received after it (up to BATCH):
    `get_message` with no wait reads only what the client holds, and is safe to stop
    midway (redis-py's parser keeps a partial reply for the next read)."""
    first = None
    while first is None:  # None: a subscription confirmation (ignored), not a message
        first = await pubsub.get_message(timeout=None)
    batch = [first]
    while len(batch) < BATCH and (more := await pubsub.get_message(timeout=0.0)) is not None:
        batch.append(more)
    return batch
