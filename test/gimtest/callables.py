"""The types of the fixtures that hand out functions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from gim.client.api import Credentials
from gim.internal.connect.server import ConnectServer
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx

M = TypeVar("M", bound=Message)


class ExpectCode(Protocol):
    async def __call__(self, awaitable: Awaitable[object], code: Code) -> GimError: ...


class DecodeCommand(Protocol):
    def __call__(self, message: cx.Message, data_type: type[M]) -> tuple[int, M]: ...


class MessageRows(Protocol):
    async def __call__(self) -> int: ...


class SdkClients(Protocol):
    async def __call__(
        self,
        creds: Credentials,
        *,
        tcp: tuple[str, int] | None = None,
        ws_url: str | None = None,
        last_seq: int | None = None,
        start: bool = True,
        **timing: float,
    ) -> Any: ...  # a started gim.client.Client


class ConnectNodes(Protocol):
    async def __call__(self, **config: Any) -> ConnectServer: ...


class Crashes(Protocol):
    def __call__(self) -> list[object]: ...
