"""The HTTP/JSON API as aiohttp handlers: `POST <route path>` with the request message in
protobuf's canonical JSON (`google.protobuf.json_format`), the identity headers as the
call's metadata, and the answer in the same JSON mapping (fields with default values
included), or an error body (`errors.py`)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from gim.internal.web.context import HttpContext, peer_of
from gim.internal.web.errors import ErrorAnswers, body, of_error
from gim.internal.web.routes import IDENTITY_HEADERS, Route
from gim.pkg import log
from gim.pkg.errors import bad_request, unauthorized
from gim.pkg.security import REFUSED, SECRET_KEY

Handler = Callable[[Any, Any], Awaitable[Message]]

_log = log.get("http")


def json_response(status: int, data: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, ensure_ascii=False), content_type="application/json")


def to_json(message: Message) -> dict[str, Any]:
    """The canonical JSON mapping, every field included, in field-number order."""
    return _in_field_order(
        message.DESCRIPTOR, json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    )


def _in_field_order(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    ordered: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.json_name not in data:
            continue
        value = data[field.json_name]
        nested = field.message_type
        if nested is not None and not nested.GetOptions().map_entry and nested.full_name.startswith("pb."):
            value = (
                [_in_field_order(nested, v) for v in value]
                if isinstance(value, list)
                else _in_field_order(nested, value)
            )
        ordered[field.json_name] = value
    return ordered


def identity(headers: Any) -> list[tuple[str, str]]:
    """The identity headers present (`user_id` or `user-id`, ...) as gRPC metadata pairs."""
    found = []
    for key in IDENTITY_HEADERS:
        value = headers.get(key)
        if value is None:
            value = headers.get(key.replace("_", "-"))
        if value is not None:
            found.append((key, value.strip()))
    return found


def parse_body(route: Route, text: str) -> Message:
    """The request message from a JSON body ('' is the empty message); 10001 if it is not one."""
    request = route.request()
    try:
        json_format.Parse(text if text.strip() else "{}", request)
    except json_format.ParseError as exc:
        raise bad_request(f"the body is not a {route.request.DESCRIPTOR.full_name} in JSON: {exc}") from None
    return request


class JsonApi:
    """The API routes of one listener, each bound to the servicer method that answers it.

    `secret`: the private listener's shared secret (header `gim-internal-secret`), '' = none.
    """

    def __init__(self, handlers: Iterable[tuple[Route, Handler]], secret: str = "") -> None:
        self.handlers = {route.path: (route, handler) for route, handler in handlers}
        self._secret = secret.encode()
        self._errors = ErrorAnswers()
        self.refusals = log.Summary(_log)

    def add_to(self, app: web.Application) -> None:
        for path in self.handlers:
            app.router.add_post(path, self.handle)
        app.router.add_route("*", "/v1/{tail:.*}", self.unknown)

    async def handle(self, request: web.Request) -> web.Response:
        route, handler = self.handlers[request.path]
        if self._secret and not self._secret_ok(request):
            self.refusals.warning("internal_call_refused", kind="gim-internal-secret", path=route.path,
                                  peer=request.remote)  # fmt: skip
            return json_response(*of_error(unauthorized(REFUSED)))
        try:
            message = parse_body(route, await request.text())
            peername = request.transport.get_extra_info("peername") if request.transport else None
            context = HttpContext(identity(request.headers), peer_of(peername))
            response = await handler(message, context)
        except Exception as exc:
            return json_response(*self._errors.answer(exc, route.full_name))
        return json_response(200, to_json(response))

    def _secret_ok(self, request: web.Request) -> bool:
        given = request.headers.get(SECRET_KEY, "")
        return hmac.compare_digest(given.encode(), self._secret)

    async def unknown(self, request: web.Request) -> web.Response:
        if request.path in self.handlers:  # a GET (or other) on a method's path
            return json_response(405, body(10001, "INVALID_ARGUMENT", f"{request.path} takes POST"))
        error = bad_request(f"no method {request.path} here; /openapi.json lists them")
        return json_response(404, body(int(error.code), "NOT_FOUND", error.message))
