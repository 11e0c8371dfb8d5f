"""The rate limits of LogicExt callers (docs/security.md "Limits").

Per user: SendMessage (`send_limit`), PushRoom (`room_push_limit`), rooms that pushes
bring into being (`new_room_limit`, checked where the room's seq row is created, so a
refused push leaves no row), CreateGroup (`create_group_limit`), AddFriend
(`add_friend_limit`). Per client address: RegisterDevice (`register_device_limit`; no
user is known yet), except addresses in `limit_exempt`. Each refusal is
RESOURCE_EXHAUSTED naming the limit and when to try again; nothing else is done.
Counted in Redis (pkg/ratelimit.py), shared by every logic node; with Redis unreachable
they do not apply (logged).
"""

from __future__ import annotations

from gim.pkg.config import LogicConfig
from gim.pkg.ratelimit import Rate, RateLimiter, host_of, is_exempt, networks


class LogicLimits:
    def __init__(self, limiter: RateLimiter, config: LogicConfig) -> None:
        self._limiter = limiter
        self._send = Rate.parse(config.send_limit)
        self._room_push = Rate.parse(config.room_push_limit)
        self._new_room = Rate.parse(config.new_room_limit)
        self._create_group = Rate.parse(config.create_group_limit)
        self._add_friend = Rate.parse(config.add_friend_limit)
        self._register_device = Rate.parse(config.register_device_limit)
        self._exempt = networks(config.limit_exempt)

    async def send(self, user_id: int) -> None:
        await self._limiter.check("send", user_id, self._send, "too many messages sent by this user")

    async def room_push(self, user_id: int) -> None:
        await self._limiter.check("room_push", user_id, self._room_push, "too many room pushes by this user")

    async def new_room(self, user_id: int) -> None:
        await self._limiter.check("new_room", user_id, self._new_room, "too many new rooms pushed to by this user")

    async def create_group(self, user_id: int) -> None:
        await self._limiter.check("create_group", user_id, self._create_group, "too many groups created by this user")

    async def add_friend(self, user_id: int) -> None:
        await self._limiter.check("add_friend", user_id, self._add_friend, "too many friend requests by this user")

    async def register_device(self, peer: str) -> None:
        """`peer`: the gRPC peer (context.peer())."""
        host = host_of(peer)
        if host and not is_exempt(host, self._exempt):
            what = "too many devices registered from this address"
            await self._limiter.check("register_device", host, self._register_device, what)
