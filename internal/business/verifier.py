"""Verification of the phone code at sign-in: pluggable, chosen by config `verifier`.

- `dev`: `DevCodeVerifier`, one fixed code (`dev_code`) for every phone number, for
  development; with `dev_code` empty every sign-in is refused. Business refuses to start
  with a development code on a non-loopback `ext_listen` unless `dev_code_anywhere`
  (pkg/config.py).
- `http`: `HttpVerifier`, the operator's SMS service. For each sign-in gim POSTs
  `{"phone_number": "...", "code": "..."}` (JSON) to `verifier_url` and expects status 200
  with a JSON object whose `valid` is true (right code) or false (wrong code: 10010).
  Anything else — no connection, no answer within `verifier_timeout`, another status, a
  body that is not such an object — is UNAVAILABLE 10002 ("retry"), never "wrong code",
  and is logged.
- `none`: every sign-in is refused (10010), with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
from typing import Protocol
from urllib.parse import urlsplit

from gim.pkg import log
from gim.pkg.config import BusinessConfig
from gim.pkg.errors import Code, GimError, unavailable

_log = log.get("verifier")

ANSWER_MAX = 64 * 1024  # bytes of the verifier's answer read at most


class CodeVerifier(Protocol):
    async def verify(self, phone_number: str, code: str) -> None:
        """Return if `code` is right for `phone_number`, else raise 10010 (10002: could not tell)."""


def wrong_code() -> GimError:
    return GimError(Code.WRONG_CODE, "wrong verification code")


class DevCodeVerifier:
    """Accepts one fixed code for every phone number: for development only."""

    def __init__(self, code: str) -> None:
        self._code = code

    async def verify(self, phone_number: str, code: str) -> None:
        if not hmac.compare_digest(code.encode(), self._code.encode()):
            raise wrong_code()


class NoCodeVerifier:
    """Used when nothing is configured: every sign-in is refused, with the reason."""

    async def verify(self, phone_number: str, code: str) -> None:
        raise GimError(Code.WRONG_CODE, "no verification code verifier is configured")


class VerifierFailed(Exception):
    """The verifier service gave no usable answer (the message says what it did)."""


class HttpVerifier:
    """Asks the operator's code service over HTTP(S): one POST per sign-in (HTTP/1.1,
    `Connection: close`), bounded by `timeout` seconds from connecting to the last byte."""

    def __init__(self, url: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"verifier_url: expected an http:// or https:// URL, got {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._netloc = parts.netloc.rpartition("@")[2]
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.timeout = timeout
        self._failures = log.Summary(_log)

    async def verify(self, phone_number: str, code: str) -> None:
        try:
            valid = await asyncio.wait_for(self._ask(phone_number, code), self.timeout)
        except (OSError, TimeoutError, EOFError, VerifierFailed, ValueError) as exc:
            what = (
                f"no answer within {self.timeout:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc) or type(exc).__name__
            )
            self._failures.warning("verifier_failed", kind=type(exc).__name__, url=self.url, error=what)
            raise unavailable("the sign-in code service did not answer") from None
        if not valid:
            raise wrong_code()

    async def _ask(self, phone_number: str, code: str) -> bool:
        body = json.dumps({"phone_number": phone_number, "code": code}).encode()
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._netloc}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            "User-Agent: gim-business\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            status, answer = await _read_response(reader)
        finally:
            writer.close()
        if status != 200:
            raise VerifierFailed(f"answered HTTP {status}")
        try:
            valid = json.loads(answer).get("valid")
        except (ValueError, AttributeError):
            raise VerifierFailed("answered 200 without a JSON object") from None
        if not isinstance(valid, bool):
            raise VerifierFailed('answered 200 without "valid": true or false')
        return valid


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of an HTTP/1.x response: Content-Length, chunked or until EOF."""
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise VerifierFailed(f"answered something that is not HTTP ({status_line[:40]!r})")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while (size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16)) > 0:
            if len(body) + size > ANSWER_MAX:
                raise VerifierFailed("answer too long")
            body += await reader.readexactly(size)
            await reader.readline()
        return int(parts[1]), body
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > ANSWER_MAX:
            raise VerifierFailed("answer too long")
        return int(parts[1]), await reader.readexactly(length)
    return int(parts[1]), await reader.read(ANSWER_MAX)


def from_config(config: BusinessConfig) -> CodeVerifier:
    if config.verifier == "http":
        return HttpVerifier(config.verifier_url, config.verifier_timeout)
    if config.verifier == "dev" and config.dev_code:
        return DevCodeVerifier(config.dev_code)
    return NoCodeVerifier()
