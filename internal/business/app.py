"""The business service's use cases: sign-in, profiles, search, token auth."""

from __future__ import annotations

from gim.internal.business.attempts import SignInAttempts, masked
from gim.internal.business.tokens import TokenStore
from gim.internal.business.users import PHONE_MAX, User, UserStore
from gim.internal.business.verifier import CodeVerifier
from gim.pkg import log
from gim.pkg.cache import KIND_USER, Cache
from gim.pkg.errors import Code, GimError, bad_request, device_not_yours

MAX_AUTHS = 1000  # tokens checked in one AuthMany call, at most

_log = log.get("business")


class DeviceChecker:
    """Asks logic about devices (LogicInt): who owns one, and claiming it at sign-in."""

    async def owner(self, device_id: int) -> int:  # pragma: no cover - interface
        """The device's owner (0: nobody yet); raises 10014 if there is no such device."""
        raise NotImplementedError

    async def claim(self, device_id: int, user_id: int) -> None:  # pragma: no cover - interface
        """Make `user_id` the owner unless another user is (atomically): 10017 if so."""
        raise NotImplementedError


class BusinessApp:
    def __init__(
        self,
        users: UserStore,
        tokens: TokenStore,
        verifier: CodeVerifier,
        devices: DeviceChecker,
        search_limit: int,
        cache: Cache,
        attempts: SignInAttempts | None = None,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.verifier = verifier
        self.devices = devices
        self.search_limit = search_limit
        self.cache = cache
        self.attempts = attempts  # wrong-code lockout (None: no limit)

    async def sign_in(
        self, phone_number: str, code: str, device_id: int, client_addr: str = ""
    ) -> tuple[User, bool, str]:
        phone_number = phone_number.strip()
        if not phone_number or len(phone_number) > PHONE_MAX:
            raise bad_request(f"phone_number must be 1..{PHONE_MAX} characters")
        if device_id <= 0:
            raise bad_request("device_id must be positive (LogicExt.RegisterDevice gives one)")
        await self._verify(phone_number, code, client_addr)
        # A device belongs to the first user who signs in on it (docs/protocol.md §2.3).
        owner = await self.devices.owner(device_id)  # 10014 if there is no such device
        if owner and owner != await self._user_id(phone_number):
            _log.warning("sign_in_device_not_yours", device_id=device_id, owner=owner)
            raise device_not_yours()  # refused before anything is created
        user, is_new = await self.users.get_or_create(phone_number)
        await self.devices.claim(device_id, user.user_id)  # atomic: of two users racing, one wins
        token = await self.tokens.issue(user.user_id, device_id)
        _log.info("signed_in", user_id=user.user_id, device_id=device_id, is_new=is_new)
        return user, is_new, token

    async def _verify(self, phone_number: str, code: str, client_addr: str) -> None:
        """The verifier's word on the code, within the attempt limits (RESOURCE_EXHAUSTED
        while the phone or the client address is locked out, see attempts.py)."""
        if self.attempts is None:
            await self.verifier.verify(phone_number, code)
            return
        await self.attempts.check(phone_number, client_addr)
        try:
            await self.verifier.verify(phone_number, code)
        except GimError as exc:
            if exc.code == Code.WRONG_CODE:
                await self.attempts.failed(phone_number, client_addr)
                _log.info("wrong_code", phone_number=masked(phone_number), client_addr=client_addr)
            raise

    async def _user_id(self, phone_number: str) -> int:
        """The user id of this phone number, 0 if it has none yet."""
        user = await self.users.by_phone(phone_number)
        return user.user_id if user is not None else 0

    async def auth(self, user_id: int, device_id: int, token: str) -> None:
        error = (await self.auth_many([(user_id, device_id, token)]))[0]
        if error is not None:
            raise error

    async def auth_many(self, auths: list[tuple[int, int, str]]) -> list[GimError | None]:
        """For each (user, device, token): None if the token is valid, else why not."""
        if len(auths) > MAX_AUTHS:
            raise bad_request(f"at most {MAX_AUTHS} auths in one call")
        required = GimError(Code.UNAUTHORIZED, "user_id, device_id and token are required")
        results: list[GimError | None] = [
            required if user_id <= 0 or device_id <= 0 or not token else None for user_id, device_id, token in auths
        ]
        wellformed = [i for i, r in enumerate(results) if r is None]
        if wellformed:
            checked = await self.tokens.check_many([auths[i] for i in wellformed])
            for i, error in zip(wellformed, checked, strict=True):
                results[i] = error
        return results

    async def get_user(self, user_id: int) -> User:
        if user_id <= 0:
            raise bad_request("user_id must be positive")
        found = await self.users.get(user_id)
        if found is None:
            raise GimError(Code.USER_NOT_FOUND, f"user {user_id} not found")
        return found

    async def get_users(self, user_ids: list[int]) -> dict[int, User]:
        return await self.users.get_many(i for i in user_ids if i > 0)

    async def update_user(self, user_id: int, nickname: str, sex: int, avatar_url: str, extra: str) -> None:
        await self.users.update(user_id, nickname, sex, avatar_url, extra)
        await self.cache.invalidate(KIND_USER, [user_id])  # logic caches user info
        _log.info("user_updated", user_id=user_id)

    async def search(self, key: str) -> list[User]:
        if len(key) > 64:
            raise bad_request("search key is longer than 64 characters")
        return await self.users.search(key, self.search_limit)
