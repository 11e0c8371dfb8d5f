"""The OpenAPI 3.1 description of the HTTP/JSON API, built from the protobuf descriptors.

Served at `/openapi.json` and committed as docs/openapi.json (`make openapi` writes it; a
test fails when the file differs from a fresh build or from the service definitions).
Schemas follow protobuf's canonical JSON mapping: field names in lowerCamelCase (the
proto names are accepted in requests too), 64-bit integers as decimal strings (numbers
accepted), `bytes` as base64, enums by name (numbers accepted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gim.internal.web.routes import IDENTITY_HEADERS, PRIVATE, Route, routes
from gim.pkg.security import SECRET_KEY

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    FieldDescriptor.TYPE_INT64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": ["string", "integer"], "format": "uint64"},
    FieldDescriptor.TYPE_FIXED64: {"type": ["string", "integer"], "format": "uint64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

HEADER_TEXT = {
    "user_id": "the caller's user id (from SignIn); gRPC metadata user_id",
    "device_id": "the caller's device id (from RegisterDevice); gRPC metadata device_id",
    "token": "the sign-in token (from SignIn); gRPC metadata token",
    "request_id": "optional: makes a retried SendMessage safe (docs/architecture.md); gRPC metadata request_id",
}


def ref(full_name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{full_name}"}


def field_schema(field: FieldDescriptor) -> dict[str, Any]:
    """The JSON schema of one field's value (arrays and maps included)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value)}
    single = _single(field)
    return {"type": "array", "items": single} if field.is_repeated else single


def _single(field: FieldDescriptor) -> dict[str, Any]:
    if field.message_type is not None:
        return ref(field.message_type.full_name)
    if field.enum_type is not None:
        return ref(field.enum_type.full_name)
    return dict(_SCALARS[field.type])


def message_schema(message: Descriptor) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field.json_name: field_schema(field) for field in message.fields},
    }


def enum_schema(enum: EnumDescriptor) -> dict[str, Any]:
    return {"type": "string", "enum": [value.name for value in enum.values]}


def _collect(message: Any, messages: dict[str, Descriptor], enums: dict[str, EnumDescriptor]) -> None:
    if message.full_name in messages:
        return
    messages[message.full_name] = message
    for field in message.fields:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value = field.message_type.fields_by_name["value"]
                if value.message_type is not None:
                    _collect(value.message_type, messages, enums)
                elif value.enum_type is not None:
                    enums[value.enum_type.full_name] = value.enum_type
            else:
                _collect(field.message_type, messages, enums)
        elif field.enum_type is not None:
            enums[field.enum_type.full_name] = field.enum_type


def operation(route: Route) -> dict[str, Any]:
    private = route.listener == PRIVATE
    headers = [] if private or route.anonymous else list(IDENTITY_HEADERS)
    if private:
        headers = ["request_id"] if route.method == "SendMessage" else []
    op: dict[str, Any] = {
        "operationId": f"{route.service}.{route.method}",
        "summary": f"{route.service}.{route.method} ({route.full_name})",
        "tags": [route.service],
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": name != "request_id",
                "description": HEADER_TEXT[name],
                "schema": {"type": "string"},
            }
            for name in headers
        ],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": ref(route.request.DESCRIPTOR.full_name)}},
        },
        "responses": {
            "200": {
                "description": route.response.DESCRIPTOR.name,
                "content": {"application/json": {"schema": ref(route.response.DESCRIPTOR.full_name)}},
            },
            "default": {
                "description": "a refusal or failure: the gim code, the gRPC status name, a reason",
                "content": {"application/json": {"schema": ref("Error")}},
            },
        },
    }
    if private:
        op["security"] = [{"internalSecret": []}]
        op["description"] = "Private listener (http_int_listen) only; the caller is a business backend."
    return op


def build() -> dict[str, Any]:
    """The whole document, deterministic (same protos, same JSON)."""
    all_routes = routes()
    messages: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    for route in all_routes:
        _collect(route.request.DESCRIPTOR, messages, enums)
        _collect(route.response.DESCRIPTOR, messages, enums)
    schemas: dict[str, Any] = {name: message_schema(messages[name]) for name in sorted(messages)}
    schemas.update({name: enum_schema(enums[name]) for name in sorted(enums)})
    schemas["Error"] = {
        "type": "object",
        "required": ["code", "status", "message"],
        "properties": {
            "code": {"type": "integer", "description": "gim error code (docs/protocol.md §4); 0 when there is none"},
            "status": {"type": "string", "description": "the gRPC status name (standard codes)"},
            "message": {"type": "string"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gim HTTP/JSON API",
            "version": "1",
            "description": (
                "Every LogicExt and UserExt method on the public listener (http_listen), the LogicInt methods "
                "business backends call on the private one (http_int_listen). Bodies in protobuf's canonical "
                "JSON mapping. See docs/http.md."
            ),
        },
        "paths": {route.path: {"post": operation(route)} for route in all_routes},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"internalSecret": {"type": "apiKey", "in": "header", "name": SECRET_KEY}},
        },
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """`make openapi`: write docs/openapi.json."""
    DOC_PATH.write_text(dumps(build()))
    print(f"wrote {DOC_PATH}")


if __name__ == "__main__":
    main()
