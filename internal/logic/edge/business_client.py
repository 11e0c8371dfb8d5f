"""What logic asks the business service (UserInt), as logic calls it (an edge): token
auth and user profiles, handed to the domain as `values.User`."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc import aio

from gim.internal.logic.values import User
from gim.pkg import log, rpc
from gim.pkg.cache import KIND_USER, Cache
from gim.pkg.errors import Code, GimError, bad_token, errors_of
from gim.pkg.pb import user_ext_pb2, user_int_pb2, user_int_pb2_grpc

_log = log.get("users")


AUTH_CACHE_MAX = 100_000  # tokens remembered at most (then forgotten all at once)


def _stable(error: GimError) -> GimError:
    """What a caller is told when the business service refuses a token: every bad token
    the same answer (whatever text a business backend chose), and no peer's text for the
    rest (a gim code of our own: its own words)."""
    if error.code == Code.UNAUTHORIZED:
        return bad_token()
    if error.code == Code.UNAVAILABLE:
        return error
    return GimError(error.code)


class UserClient:
    """UserInt calls; user info is cached in Redis (the business service invalidates it)."""

    def __init__(
        self, stub: user_int_pb2_grpc.UserIntStub, timeout: float, cache: Cache, auth_cache_seconds: float = 0.0
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        self._cache = cache
        self._auth_cache_seconds = auth_cache_seconds
        self._authed: dict[tuple[int, int, str], float] = {}  # -> trusted until (monotonic)
        self._one_by_one = False  # the business service answered AuthMany UNIMPLEMENTED

    async def auth(self, user_id: int, device_id: int, token: str, *, cached: bool = False) -> None:
        """Return if the token is valid for (user, device); raise 10000 otherwise.

        `cached`: a token that passed within `auth_cache_seconds` passes again without
        asking (API calls); a sign-in on a long connection always asks.
        """
        key = (user_id, device_id, token)
        now = time.monotonic()
        if cached and self._authed.get(key, 0.0) > now:
            return
        req = user_int_pb2.AuthReq(user_id=user_id, device_id=device_id, token=token)
        try:
            await rpc.call(self._stub.Auth, req, self._timeout, wait_for_ready=True)
        except GimError as exc:
            raise _stable(exc) from None
        if self._auth_cache_seconds > 0:
            if len(self._authed) >= AUTH_CACHE_MAX:
                self._authed.clear()
            self._authed[key] = now + self._auth_cache_seconds

    async def auth_many(self, auths: list[tuple[int, int, str]]) -> list[GimError | None]:
        """Each (user, device, token) asked of business, in one AuthMany call (or, for a
        business backend without it, one Auth each): None where the token is valid."""
        if not self._one_by_one:
            req = user_int_pb2.AuthManyReq(
                auths=[user_int_pb2.AuthReq(user_id=u, device_id=d, token=t) for u, d, t in auths]
            )
            try:
                resp = await rpc.call(self._stub.AuthMany, req, self._timeout, wait_for_ready=True)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                _log.info("auth_one_by_one", reason="the business service has no AuthMany")
                self._one_by_one = True
            else:
                return [_stable(e) if e is not None else None for e in errors_of(resp.results, len(auths), "auths")]
        return list(await asyncio.gather(*(self._auth_one(*a) for a in auths)))

    async def _auth_one(self, user_id: int, device_id: int, token: str) -> GimError | None:
        try:
            await self.auth(user_id, device_id, token)
        except GimError as exc:
            return exc
        return None

    async def get_many(self, user_ids: list[int]) -> dict[int, User]:
        """The users that exist among `user_ids`."""
        cached = await self._cache.load(KIND_USER, (i for i in user_ids if i > 0), self._fetch)
        return {i: _user(i, user_ext_pb2.User.FromString(value)) for i, value in cached.items()}

    async def _fetch(self, user_ids: list[int]) -> dict[int, bytes]:
        req = user_int_pb2.GetUsersReq(user_ids=dict.fromkeys(user_ids, 0))
        resp = await rpc.call(self._stub.GetUsers, req, self._timeout, wait_for_ready=True)
        return {i: user.SerializeToString() for i, user in resp.users.items()}


def _user(user_id: int, pb: user_ext_pb2.User) -> User:
    return User(user_id, pb.nickname, pb.sex, pb.avatar_url, pb.extra)
