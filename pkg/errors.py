"""The one error type domain code raises, carrying gim's numeric code (docs/protocol.md §4)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc


class Code(enum.IntEnum):
    UNAUTHORIZED = 10000
    BAD_REQUEST = 10001
    # not in the 2021 contract: a dependency (Redis, the database, a peer) is down or
    # loading; retry. Its gRPC status is UNAVAILABLE in both modes, so that clients and
    # retry policies that know only the standard codes retry it.
    UNAVAILABLE = 10002
    WRONG_CODE = 10010
    NOT_IN_GROUP = 10011
    GROUP_NOT_FOUND = 10013
    DEVICE_NOT_FOUND = 10014
    ALREADY_FRIENDS = 10015
    USER_NOT_FOUND = 10016
    # not in the 2021 contract: SignIn on a device another user owns (docs/protocol.md §2.3)
    DEVICE_NOT_YOURS = 10017


# How a gim error travels as a gRPC status (config `grpc_status`):
# - "gim" (the default, as the Go original): the gim number itself is the status code
#   (a grpc-go client reads `status.Code(err) == 10000`; grpcio clients read UNKNOWN);
# - "standard": the nearest standard status, for clients that expect only those.
# Either way the number also travels in the `gim-code` trailer, which SDKs read first.
STATUS_MODES = ("gim", "standard")

STANDARD_STATUS: dict[Code, grpc.StatusCode] = {
    Code.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    Code.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.WRONG_CODE: grpc.StatusCode.UNAUTHENTICATED,
    Code.NOT_IN_GROUP: grpc.StatusCode.PERMISSION_DENIED,
    Code.GROUP_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.DEVICE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_FRIENDS: grpc.StatusCode.ALREADY_EXISTS,
    Code.USER_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.DEVICE_NOT_YOURS: grpc.StatusCode.FAILED_PRECONDITION,
}


class GimStatus:
    """A status code outside gRPC's standard set, shaped like a `grpc.StatusCode` member:
    grpc.aio's server sends `value[0]` as the `grpc-status` trailer. (Undocumented grpcio
    behaviour, pinned by version and tested on the raw wire in test_status_wire.py; the
    synchronous `grpc.server` would send UNKNOWN instead.)"""

    def __init__(self, code: Code) -> None:
        self.value = (int(code), code.name.lower())
        self.name = code.name

    def __repr__(self) -> str:
        return f"GimStatus({self.value[0]})"


_GIM_STATUS = {code: GimStatus(code) for code in Code}


def grpc_status(code: Code, mode: str) -> grpc.StatusCode | GimStatus:
    """The gRPC status that carries `code` in status mode `mode` ("gim" or "standard")."""
    if mode == "standard" or code == Code.UNAVAILABLE:
        return STANDARD_STATUS[code]
    return _GIM_STATUS[code]


GIM_CODE_KEY = "gim-code"


class GimError(Exception):
    """A failure the caller is told about: a gim code and a human-readable reason."""

    def __init__(self, code: Code, message: str = "") -> None:
        super().__init__(message or code.name.lower().replace("_", " "))
        self.code = code
        self.message = self.args[0]

    def __repr__(self) -> str:
        return f"GimError({int(self.code)}, {self.message!r})"


# Batch calls (ConnSignIns, AuthMany) answer each item with a result message holding
# `code` (0: it succeeded) and `message`.
R = TypeVar("R")


def result_pb(cls: Callable[..., R], error: GimError | None) -> R:
    """One item's result message: its error, or code 0."""
    return cls(code=int(error.code), message=error.message) if error is not None else cls()


def errors_of(results: Sequence[Any], expected: int, what: str) -> list[GimError | None]:
    """The error each result stands for (None: it succeeded); a peer that answered for
    another number of items fails them all (try again)."""
    if len(results) != expected:
        again = unavailable(f"{len(results)} {what} answered of {expected}")
        return [again] * expected
    return [_error_of(r.code, r.message) for r in results]


def _error_of(code: int, message: str) -> GimError | None:
    if not code:
        return None
    try:
        return GimError(Code(code), message)
    except ValueError:
        return GimError(Code.BAD_REQUEST, f"{message} (unknown code {code})")


def unauthorized(message: str = "unauthorized, sign in again") -> GimError:
    return GimError(Code.UNAUTHORIZED, message)


BAD_TOKEN = "invalid or expired token, sign in again"  # one answer for every bad token: nothing to probe


def bad_token() -> GimError:
    return GimError(Code.UNAUTHORIZED, BAD_TOKEN)


def device_not_yours() -> GimError:
    return GimError(Code.DEVICE_NOT_YOURS, "device belongs to another user: register a new device")


def bad_request(message: str) -> GimError:
    return GimError(Code.BAD_REQUEST, message)


# 10011 has two meanings, told apart by the message: 2021 clients know the code (the
# original answered it to non-members) and the admin rules are gim's, so both keep it.
def not_in_group(user_id: int, group_id: int) -> GimError:
    """10011: the user is not a member of the group."""
    return GimError(Code.NOT_IN_GROUP, f"user {user_id} is not in group {group_id}")


def admins_only(group_id: int, action: str) -> GimError:
    """10011 to a member: `action` is for the group's admins."""
    return GimError(Code.NOT_IN_GROUP, f"only an admin of group {group_id} may {action}")


def unavailable(what: str) -> GimError:
    return GimError(Code.UNAVAILABLE, f"temporarily unavailable ({what}), retry")


def check_length(name: str, value: str, limit: int) -> None:
    """10001 if `value` is longer than its column allows."""
    if len(value) > limit:
        raise bad_request(f"{name} is longer than {limit} characters")


def check_id(name: str, value: int) -> None:
    """10001 unless `value` is a positive id."""
    if value <= 0:
        raise bad_request(f"{name} must be positive")


class Overloaded(Exception):
    """Too much work is already waiting (e.g. the message store's queue is full): answered
    RESOURCE_EXHAUSTED, nothing was done, the caller may retry a little later."""
