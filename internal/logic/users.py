"""What logic asks the business service (UserInt): token auth and user info."""

from __future__ import annotations

from gim.pkg import rpc
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import user_ext_pb2, user_int_pb2, user_int_pb2_grpc


class UserClient:
    def __init__(self, stub: user_int_pb2_grpc.UserIntStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def auth(self, user_id: int, device_id: int, token: str) -> None:
        """Return if the token is valid for (user, device); raise 10000 otherwise."""
        req = user_int_pb2.AuthReq(user_id=user_id, device_id=device_id, token=token)
        await rpc.call(self._stub.Auth, req, self._timeout)

    async def get(self, user_id: int) -> user_ext_pb2.User:
        """The user, or 10016."""
        users = await self.get_many([user_id])
        if user_id not in users:
            raise GimError(Code.USER_NOT_FOUND, f"user {user_id} not found")
        return users[user_id]

    async def get_many(self, user_ids: list[int]) -> dict[int, user_ext_pb2.User]:
        ids = {i: 0 for i in user_ids if i > 0}
        if not ids:
            return {}
        resp = await rpc.call(self._stub.GetUsers, user_int_pb2.GetUsersReq(user_ids=ids), self._timeout)
        return dict(resp.users)
