"""The business process: UserExt/BusinessExt and UserInt/BusinessInt on their ports."""

from __future__ import annotations

import grpc
import redis.asyncio as aioredis
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.business.api import UserExtServicer, UserIntServicer
from gim.internal.business.app import BusinessApp, DeviceChecker
from gim.internal.business.attempts import SignInAttempts
from gim.internal.business.tokens import TokenStore
from gim.internal.business.users import UserStore
from gim.internal.business.verifier import from_config
from gim.pkg import db, health, log, redis_client, rpc
from gim.pkg.cache import Cache
from gim.pkg.config import BusinessConfig
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc
from gim.pkg.pb import user_ext_pb2_grpc as ext_grpc
from gim.pkg.pb import user_int_pb2_grpc as int_grpc
from gim.pkg.ratelimit import Rate, RateLimiter, networks
from gim.pkg.security import Security

_log = log.get("business")


class LogicDeviceChecker(DeviceChecker):
    def __init__(self, logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> None:
        self._logic = logic
        self._timeout = timeout
        self._no_claims = False  # logic answered ClaimDevice UNIMPLEMENTED (an older one)

    async def owner(self, device_id: int) -> int:
        req = logic_int_pb2.GetDeviceReq(device_id=device_id)
        resp = await rpc.call(self._logic.GetDevice, req, self._timeout, wait_for_ready=True)
        if resp.device.device_id != device_id:
            raise GimError(Code.DEVICE_NOT_FOUND, f"device {device_id} not found")
        return int(resp.device.user_id)

    async def claim(self, device_id: int, user_id: int) -> None:
        if self._no_claims:
            return
        req = logic_int_pb2.ClaimDeviceReq(device_id=device_id, user_id=user_id)
        try:
            await rpc.call(self._logic.ClaimDevice, req, self._timeout, wait_for_ready=True)
        except aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            _log.warning("claim_device_unsupported", reason="logic has no ClaimDevice: ownership checked, not claimed")
            self._no_claims = True


class BusinessServer(rpc.ServesPair):
    """Built from its dependencies; `start()` binds both ports, `stop()` closes all."""

    def __init__(
        self,
        config: BusinessConfig,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        logic_channel: aio.Channel,
    ) -> None:
        self.config = config
        self._engine = engine
        self._redis = redis
        self._logic_channel = logic_channel
        self.app = BusinessApp(
            users=UserStore(engine),
            tokens=TokenStore(engine, redis, config.redis_prefix, config.token_ttl),
            verifier=from_config(config),
            devices=LogicDeviceChecker(logic_int_pb2_grpc.LogicIntStub(logic_channel), 5.0),
            search_limit=config.search_limit,
            cache=Cache(redis, config.redis_prefix, config.cache_ttl),
            attempts=SignInAttempts(
                RateLimiter(redis, config.redis_prefix, "business"),
                per_phone=Rate.parse(config.sign_in_phone_limit),
                per_address=Rate.parse(config.sign_in_address_limit),
                exempt=networks(config.limit_exempt),
            ),
        )
        self._grpc = rpc.ServerPair(config.grpc_status, Security.from_config(config))
        self._grpc.expose(["pb.UserInt", "pb.BusinessInt"], ["pb.UserExt", "pb.BusinessExt"],
                          reflection=config.reflection, probe=health.database_probe(engine),
                          drain_seconds=config.drain_seconds)  # fmt: skip
        int_servicer = UserIntServicer(self.app)
        int_grpc.add_UserIntServicer_to_server(int_servicer, self._grpc.int)
        int_grpc.add_BusinessIntServicer_to_server(int_servicer, self._grpc.int)
        ext_servicer = UserExtServicer(self.app)
        ext_grpc.add_UserExtServicer_to_server(ext_servicer, self._grpc.ext)
        ext_grpc.add_BusinessExtServicer_to_server(ext_servicer, self._grpc.ext)

    @classmethod
    def from_config(cls, config: BusinessConfig) -> BusinessServer:
        return cls(
            config,
            db.create_engine(config.database_url),
            redis_client.connect(config.redis_url),
            rpc.channel(config.logic_int_addr, outbound=Security.from_config(config).outbound),
        )

    async def start(self) -> None:
        await self._grpc.start(self.config.int_listen, self.config.ext_listen)
        _log.info(
            "business_started", int_port=self.int_port, ext_port=self.ext_port, verifier=self.config.verifier,
            dev_code=bool(self.config.dev_code) and self.config.verifier == "dev",
        )  # fmt: skip

    async def stop(self, grace: float = 5.0) -> None:
        await self._grpc.stop(grace)
        await self._logic_channel.close()
        await self._redis.aclose()
        await self._engine.dispose()
        _log.info("business_stopped")
