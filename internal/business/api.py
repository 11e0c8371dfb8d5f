"""gRPC servicers of the business service; one object answers UserX and BusinessX."""

from __future__ import annotations

from typing import Any

from grpc import aio

from gim.internal.business.app import BusinessApp
from gim.internal.business.users import User
from gim.pkg import metrics, rpc
from gim.pkg.errors import result_pb
from gim.pkg.pb import user_ext_pb2 as ext
from gim.pkg.pb import user_ext_pb2_grpc as ext_grpc
from gim.pkg.pb import user_int_pb2 as int_
from gim.pkg.pb import user_int_pb2_grpc as int_grpc
from gim.pkg.ratelimit import host_of

Context = aio.ServicerContext[Any, Any]


def user_pb(user: User) -> ext.User:
    return ext.User(
        user_id=user.user_id,
        nickname=user.nickname,
        sex=user.sex,
        avatar_url=user.avatar_url,
        extra=user.extra,
        create_time=user.create_time,
        update_time=user.update_time,
    )


class UserExtServicer(ext_grpc.UserExtServicer):
    """UserExt (and BusinessExt): for apps. Everything but SignIn needs a token."""

    def __init__(self, app: BusinessApp) -> None:
        self.app = app

    async def _caller(self, context: Context) -> int:
        user_id, device_id, token, _ = rpc.identity_of(context)
        await self.app.auth(user_id, device_id, token)
        return user_id

    async def SignIn(self, request: ext.SignInReq, context: Context) -> ext.SignInResp:
        client_addr = host_of(context.peer() or "")  # wrong codes are counted per address too
        with metrics.counting(metrics.BUSINESS_SIGN_INS):
            user, is_new, token = await self.app.sign_in(
                request.phone_number, request.code, request.device_id, client_addr
            )
        return ext.SignInResp(is_new=is_new, user_id=user.user_id, token=token)

    async def GetUser(self, request: ext.GetUserReq, context: Context) -> ext.GetUserResp:
        await self._caller(context)
        return ext.GetUserResp(user=user_pb(await self.app.get_user(request.user_id)))

    async def UpdateUser(self, request: ext.UpdateUserReq, context: Context) -> ext.UpdateUserResp:
        user_id = await self._caller(context)
        await self.app.update_user(user_id, request.nickname, request.sex, request.avatar_url, request.extra)
        return ext.UpdateUserResp()

    async def SearchUser(self, request: ext.SearchUserReq, context: Context) -> ext.SearchUserResp:
        await self._caller(context)
        return ext.SearchUserResp(users=[user_pb(u) for u in await self.app.search(request.key)])


class UserIntServicer(int_grpc.UserIntServicer):
    """UserInt (and BusinessInt): what gim asks any business backend about users."""

    def __init__(self, app: BusinessApp) -> None:
        self.app = app

    async def Auth(self, request: int_.AuthReq, context: Context) -> int_.AuthResp:
        with metrics.counting(metrics.BUSINESS_TOKEN_CHECKS):
            await self.app.auth(request.user_id, request.device_id, request.token)
        return int_.AuthResp()

    async def AuthMany(self, request: int_.AuthManyReq, context: Context) -> int_.AuthManyResp:
        errors = await self.app.auth_many([(a.user_id, a.device_id, a.token) for a in request.auths])
        for error in errors:
            metrics.BUSINESS_TOKEN_CHECKS.labels(metrics.outcome_of(error)).inc()
        return int_.AuthManyResp(results=[result_pb(int_.AuthResult, e) for e in errors])

    async def GetUser(self, request: ext.GetUserReq, context: Context) -> ext.GetUserResp:
        return ext.GetUserResp(user=user_pb(await self.app.get_user(request.user_id)))

    async def GetUsers(self, request: int_.GetUsersReq, context: Context) -> int_.GetUsersResp:
        users = await self.app.get_users(list(request.user_ids))
        return int_.GetUsersResp(users={i: user_pb(u) for i, u in users.items()})
