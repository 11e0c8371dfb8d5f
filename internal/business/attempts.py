"""Wrong sign-in codes counted per phone number and per client address, with lockout.

After `sign_in_phone_limit` wrong codes for one phone number (default 5 in 15 minutes)
every sign-in of that number is refused — RESOURCE_EXHAUSTED "too many wrong codes for
this phone: try again in N minutes", the right code too, without asking the verifier —
until the window that the first wrong code opened ends. Likewise `sign_in_address_limit`
for one client address (default 20 in 15 minutes), except addresses in `limit_exempt`.
A refused attempt is not counted again, so a locked phone does not lock its address.
Windows are fixed and counted in Redis (pkg/ratelimit.py); with Redis unreachable no
attempt limit applies (logged), sign-ins go on.
"""

from __future__ import annotations

from gim.pkg.ratelimit import Networks, Rate, RateLimiter, is_exempt


def masked(phone_number: str) -> str:
    """A phone number as logged: its last four digits."""
    return "*" * max(0, len(phone_number) - 4) + phone_number[-4:]


class SignInAttempts:
    def __init__(
        self, limiter: RateLimiter, per_phone: Rate | None, per_address: Rate | None, exempt: Networks
    ) -> None:
        self._limiter = limiter
        self._per_phone = per_phone
        self._per_address = per_address
        self._exempt = exempt

    def _address(self, client_addr: str) -> str | None:
        """The address counted for this client; None when exempt or unknown."""
        return None if not client_addr or is_exempt(client_addr, self._exempt) else client_addr

    async def check(self, phone_number: str, client_addr: str) -> None:
        """`RateLimited` if the phone or the address is locked out."""
        found = await self._limiter.over("sign_in_phone", phone_number, self._per_phone)
        if found is not None:
            what = "too many wrong codes for this phone"
            raise self._limiter.refused("sign_in_phone", phone_number, what, found, masked(phone_number))
        address = self._address(client_addr)
        if address is not None and (found := await self._limiter.over("sign_in_address", address, self._per_address)):
            raise self._limiter.refused("sign_in_address", address, "too many wrong codes from this address", found)

    async def failed(self, phone_number: str, client_addr: str) -> None:
        """Count one wrong code for the phone and the address."""
        await self._limiter.hit("sign_in_phone", phone_number, self._per_phone)
        address = self._address(client_addr)
        if address is not None:
            await self._limiter.hit("sign_in_address", address, self._per_address)
