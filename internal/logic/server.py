"""The logic process: LogicExt and LogicInt on their ports."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.logic.acks import AckStore
from gim.internal.logic.dead_nodes import DeadNodes
from gim.internal.logic.devices import DeviceStore
from gim.internal.logic.edge.admin_servicer import LogicAdminServicer
from gim.internal.logic.edge.business_client import UserClient
from gim.internal.logic.edge.connect_client import Deliverer
from gim.internal.logic.edge.event_encoding import ProtobufEvents
from gim.internal.logic.edge.message_encoding import ProtobufMessages
from gim.internal.logic.edge.previous_connections import PreviousConnections
from gim.internal.logic.edge.servicers import LogicExtServicer, LogicIntServicer
from gim.internal.logic.events import ServerEvents
from gim.internal.logic.fanout import FanOut
from gim.internal.logic.friend_store import FriendStore
from gim.internal.logic.friends import FriendService
from gim.internal.logic.group_store import GroupStore
from gim.internal.logic.groups import GroupService
from gim.internal.logic.limits import LogicLimits
from gim.internal.logic.message_store import MessageStore
from gim.internal.logic.rooms import RoomService
from gim.internal.logic.sending import MessageSending
from gim.internal.logic.sync import MessageSync
from gim.internal.web.server import WebServer
from gim.pkg import db, health, log, redis_client, rpc
from gim.pkg.cache import Cache
from gim.pkg.config import LogicConfig
from gim.pkg.nodes import NodeLiveness
from gim.pkg.pb import logic_ext_pb2_grpc, logic_int_pb2_grpc, user_int_pb2_grpc
from gim.pkg.ratelimit import RateLimiter
from gim.pkg.schema import MessageShards
from gim.pkg.security import Security

_log = log.get("logic")


class LogicServer(rpc.ServesPair):
    """Built from its dependencies; `start()` binds both ports, `stop()` closes all."""

    def __init__(
        self,
        config: LogicConfig,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        business_channel: aio.Channel,
    ) -> None:
        self.config = config
        self._engine = engine
        self._redis = redis
        self._business_channel = business_channel
        cache = Cache(redis, config.redis_prefix, config.cache_ttl)
        users = UserClient(
            user_int_pb2_grpc.UserIntStub(business_channel), config.rpc_timeout, cache, config.auth_cache_seconds
        )
        self.devices = DeviceStore(engine, cache)
        nodes = NodeLiveness(redis, config.redis_prefix)
        self.deliverer = Deliverer(config.rpc_timeout, alive=nodes.is_alive)
        self.dead_nodes = DeadNodes(self.devices, redis, config.redis_prefix, self.deliverer)
        self._sweeping: asyncio.Task[None] | None = None
        group_store = GroupStore(engine, cache)
        limits = LogicLimits(RateLimiter(redis, config.redis_prefix, "logic"), config)
        message_format = ProtobufMessages()
        self.rooms = RoomService(
            engine,
            redis,
            config.redis_prefix,
            users,
            self.deliverer,
            message_format,
            max_content_bytes=config.max_content_bytes,
            keep_seconds=config.room_keep_seconds,
            keep_bytes=config.room_keep_bytes,
            replay_bytes=config.room_replay_bytes,
            new_rooms=limits.new_room,
        )
        store = MessageStore(engine, MessageShards(config.message_shards))
        self.acks = AckStore(engine, redis, config.redis_prefix)
        fanout = FanOut(self.devices, nodes, users, self.deliverer, message_format)
        self.messages = MessageSending(
            store, fanout, self.acks, users, group_store, self.rooms, message_format, config.max_content_bytes
        )
        self.sync = MessageSync(store, self.acks, users, config.sync_page_size)
        events = ServerEvents(self.messages, ProtobufEvents(), message_format)
        self._grpc = rpc.ServerPair(config.grpc_status, Security.from_config(config), reuse_port=config.reuse_port)
        self._grpc.expose(["pb.LogicInt", "pb.LogicAdmin"], ["pb.LogicExt"], reflection=config.reflection,
                          probe=health.database_probe(engine), drain_seconds=config.drain_seconds)  # fmt: skip
        previous = PreviousConnections(self.deliverer)
        int_servicer = LogicIntServicer(self.devices, self.messages, self.sync, users, self.rooms, previous)
        logic_int_pb2_grpc.add_LogicIntServicer_to_server(int_servicer, self._grpc.int)
        admin = LogicAdminServicer(redis, config.redis_prefix, self.devices, config.rpc_timeout)
        logic_int_pb2_grpc.add_LogicAdminServicer_to_server(admin, self._grpc.int)
        friends = FriendService(FriendStore(engine), users, events)
        groups = GroupService(group_store, users, events, config.max_group_members)
        ext_servicer = LogicExtServicer(self.devices, self.messages, users, self.rooms, friends, groups, limits)
        logic_ext_pb2_grpc.add_LogicExtServicer_to_server(ext_servicer, self._grpc.ext)
        # the HTTP/JSON API and the chat page call the same servicer objects (off unless http_listen is set)
        self.web = WebServer.for_logic(config, ext_servicer, int_servicer)

    @property
    def http_port(self) -> int | None:
        return self.web.port

    @property
    def http_int_port(self) -> int | None:
        return self.web.int_port

    @classmethod
    def from_config(cls, config: LogicConfig) -> LogicServer:
        return cls(
            config,
            db.create_engine(config.database_url),
            redis_client.connect(config.redis_url),
            rpc.channel(config.business_int_addr, outbound=Security.from_config(config).outbound),
        )

    async def start(self) -> None:
        await self._grpc.start(self.config.int_listen, self.config.ext_listen)
        self._sweeping = asyncio.get_running_loop().create_task(self.dead_nodes.run())
        await self.web.start()
        _log.info("logic_started", int_port=self.int_port, ext_port=self.ext_port, http_port=self.http_port)

    async def stop(self, grace: float = 5.0) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)
        await self.web.stop()
        await self._grpc.stop(grace)
        await self.messages.fanout.wait_queued()  # pushes of answered sends
        await self.acks.close()  # the acks not yet written behind
        await self.deliverer.close()
        await self._business_channel.close()
        await self._redis.aclose()
        await self._engine.dispose()
        _log.info("logic_stopped")
