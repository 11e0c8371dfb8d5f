"""UserExt over HTTP: the gateway forwards each call to the business service's UserExt
(gRPC, `business_ext_addr`), so that the answer comes from the same servicer as for a
gRPC client (or from the operator's own business backend that implements UserExt)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc import aio

from gim.internal.web.errors import forwarded_error

Handler = Callable[[Any, Any], Awaitable[Message]]


class Forwarder:
    """`handler(name)`: an async `(request, context) -> response` that makes the gRPC call
    of method `name` on `channel`, with the context's metadata (the identity headers)."""

    def __init__(self, channel: aio.Channel, service: ServiceDescriptor, timeout: float, peer: str) -> None:
        self._channel = channel
        self._service = service
        self._timeout = timeout
        self._peer = peer  # what an unreachable peer is called in the 10002 answer

    def handler(self, name: str) -> Handler:
        method = self._service.methods_by_name[name]
        response_class = GetMessageClass(method.output_type)
        call: aio.UnaryUnaryMultiCallable[Message, Message] = self._channel.unary_unary(
            f"/{self._service.full_name}/{name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )

        async def forward(request: Message, context: Any) -> Message:
            metadata = tuple(context.invocation_metadata() or ())
            try:
                response: Message = await call(request, timeout=self._timeout, metadata=metadata or None)
            except aio.AioRpcError as exc:
                raise forwarded_error(exc, self._peer) from None
            return response

        return forward
