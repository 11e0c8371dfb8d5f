"""Verification of the phone code at sign-in: pluggable, development verifier opt-in."""

from __future__ import annotations

import hmac
from typing import Protocol

from gim.pkg.errors import Code, GimError


class CodeVerifier(Protocol):
    async def verify(self, phone_number: str, code: str) -> None:
        """Return if `code` is right for `phone_number`, else raise 10010."""


class DevCodeVerifier:
    """Accepts one fixed code for every phone number: for development only."""

    def __init__(self, code: str) -> None:
        self._code = code

    async def verify(self, phone_number: str, code: str) -> None:
        if not hmac.compare_digest(code.encode(), self._code.encode()):
            raise GimError(Code.WRONG_CODE, "wrong verification code")


class NoCodeVerifier:
    """Used when nothing is configured: every sign-in is refused, with the reason."""

    async def verify(self, phone_number: str, code: str) -> None:
        raise GimError(Code.WRONG_CODE, "no verification code verifier is configured")


def from_config(dev_code: str) -> CodeVerifier:
    return DevCodeVerifier(dev_code) if dev_code else NoCodeVerifier()
