"""The gRPC side for apps: register a device, sign in, then call LogicExt / UserExt."""

from __future__ import annotations

import dataclasses
from typing import Any

from grpc import aio

from gim.pkg import rpc
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_ext_pb2_grpc, user_ext_pb2, user_ext_pb2_grpc


@dataclasses.dataclass(frozen=True)
class Credentials:
    user_id: int
    device_id: int
    token: str

    def metadata(self, request_id: int = 0) -> list[tuple[str, str]]:
        md = [("user_id", str(self.user_id)), ("device_id", str(self.device_id)), ("token", self.token)]
        if request_id:
            md.append(("request_id", str(request_id)))
        return md


class GimApi:
    """LogicExt and UserExt stubs; errors come back as `GimError`."""

    def __init__(self, logic_addr: str, user_addr: str, timeout: float = 10.0) -> None:
        self._channels = [rpc.channel(logic_addr), rpc.channel(user_addr)]
        self.logic = logic_ext_pb2_grpc.LogicExtStub(self._channels[0])
        self.users = user_ext_pb2_grpc.UserExtStub(self._channels[1])
        self.timeout = timeout

    async def call(self, method: Any, request: Any, creds: Credentials | None = None, request_id: int = 0) -> Any:
        md = creds.metadata(request_id) if creds else []
        return await rpc.call(method, request, self.timeout, md)

    async def register_device(self, type_: int = 1, brand: str = "gim", model: str = "client") -> int:
        resp = await self.call(self.logic.RegisterDevice, lx.RegisterDeviceReq(type=type_, brand=brand, model=model))
        return int(resp.device_id)

    async def sign_in(self, phone_number: str, code: str, device_id: int) -> Credentials:
        req = user_ext_pb2.SignInReq(phone_number=phone_number, code=code, device_id=device_id)
        resp = await self.call(self.users.SignIn, req)
        return Credentials(resp.user_id, device_id, resp.token)

    async def send_message(
        self,
        creds: Credentials,
        receiver_type: int,
        receiver_id: int,
        content: bytes,
        message_type: int = 1,
        persist: bool = True,
        request_id: int = 0,
    ) -> int:
        req = lx.SendMessageReq(
            receiver_type=receiver_type,  # type: ignore[arg-type]
            receiver_id=receiver_id,
            message_type=message_type,  # type: ignore[arg-type]
            message_content=content,
            is_persist=persist,
        )
        return int((await self.call(self.logic.SendMessage, req, creds, request_id)).seq)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
