"""The HTTP/JSON API's routes, made from the protobuf service descriptors (no I/O).

One `POST` path per gRPC method, so that no method is forgotten when a proto grows one:

- public listener (`http_listen`): every method of `LogicExt` (`/v1/logic/<Method>`) and
  of `UserExt` (`/v1/user/<Method>`);
- private listener (`http_int_listen`): the `LogicInt` methods that business backends
  call (`/v1/logic-int/<Method>`). The others are connect's and stay gRPC-only; every
  LogicInt method must be in exactly one of the two sets (the OpenAPI test checks it).
"""

from __future__ import annotations

import dataclasses

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from gim.pkg.pb import logic_ext_pb2, logic_int_pb2, user_ext_pb2

PUBLIC = "public"
PRIVATE = "private"

# service descriptor, path prefix, listener
SERVICES: tuple[tuple[ServiceDescriptor, str, str], ...] = (
    (logic_ext_pb2.DESCRIPTOR.services_by_name["LogicExt"], "/v1/logic/", PUBLIC),
    (user_ext_pb2.DESCRIPTOR.services_by_name["UserExt"], "/v1/user/", PUBLIC),
    (logic_int_pb2.DESCRIPTOR.services_by_name["LogicInt"], "/v1/logic-int/", PRIVATE),
)

# LogicInt methods a business backend calls (docs/protocol.md §2): on the private listener
BACKEND_METHODS = frozenset({"SendMessage", "PushRoom", "PushAll", "GetDevice", "ClaimDevice", "ReleaseDevice"})
# LogicInt methods only connect nodes call: gRPC only
CONNECT_METHODS = frozenset(
    {
        "ConnSignIn",
        "ConnSignIns",
        "Sync",
        "MessageACK",
        "MessageACKs",
        "Offline",
        "Offlines",
        "SubscribeRoom",
        "ServerStop",
    }
)
# the calls that need no identity headers
ANONYMOUS = frozenset({"LogicExt.RegisterDevice", "UserExt.SignIn"})

# HTTP headers that become the call's gRPC metadata, under the same keys
IDENTITY_HEADERS = ("user_id", "device_id", "token", "request_id")


@dataclasses.dataclass(frozen=True)
class Route:
    path: str
    service: str  # "LogicExt"
    method: str  # "SendMessage"
    listener: str  # PUBLIC or PRIVATE
    request: type[Message]
    response: type[Message]
    descriptor: MethodDescriptor

    @property
    def full_name(self) -> str:
        """The gRPC method path, `/pb.LogicExt/SendMessage`."""
        return f"/{self.descriptor.containing_service.full_name}/{self.method}"

    @property
    def anonymous(self) -> bool:
        return f"{self.service}.{self.method}" in ANONYMOUS


def exposed(service: ServiceDescriptor, method: str) -> bool:
    return service.name != "LogicInt" or method in BACKEND_METHODS


def routes(listener: str | None = None) -> list[Route]:
    """Every route (of one listener when given), in proto order."""
    found = []
    for service, prefix, where in SERVICES:
        if listener not in (None, where):
            continue
        for method in service.methods:
            if exposed(service, method.name):
                found.append(
                    Route(
                        path=prefix + method.name,
                        service=service.name,
                        method=method.name,
                        listener=where,
                        request=GetMessageClass(method.input_type),
                        response=GetMessageClass(method.output_type),
                        descriptor=method,
                    )
                )
    return found
