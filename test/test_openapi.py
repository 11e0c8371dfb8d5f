"""Generated files match what they are generated from: the OpenAPI description (served and
in docs/openapi.json) matches the gRPC service definitions, the chat page's committed
build matches web/, and the page's protobuf table matches the protos."""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gim.internal.web import build, openapi, routes
from gim.pkg.pb import connect_ext_pb2, logic_ext_pb2, logic_int_pb2, push_ext_pb2, user_ext_pb2

SERVICES = {
    "LogicExt": (logic_ext_pb2, "/v1/logic/"),
    "UserExt": (user_ext_pb2, "/v1/user/"),
    "LogicInt": (logic_int_pb2, "/v1/logic-int/"),
}


def test_every_method_has_its_path_and_no_other_path_exists() -> None:
    document = openapi.build()
    expected = {}
    logic_int = logic_int_pb2.DESCRIPTOR.services_by_name["LogicInt"]
    all_int = {m.name for m in logic_int.methods}
    assert routes.BACKEND_METHODS | routes.CONNECT_METHODS == all_int, "classify every LogicInt method"
    assert not routes.BACKEND_METHODS & routes.CONNECT_METHODS
    for name, (module, prefix) in SERVICES.items():
        for method in module.DESCRIPTOR.services_by_name[name].methods:
            if name == "LogicInt" and method.name in routes.CONNECT_METHODS:
                continue
            expected[prefix + method.name] = method
    assert set(document["paths"]) == set(expected)
    for path, method in expected.items():
        op = document["paths"][path]["post"]
        assert op["operationId"] == f"{method.containing_service.name}.{method.name}"
        request = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        response = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert request == f"#/components/schemas/{method.input_type.full_name}"
        assert response == f"#/components/schemas/{method.output_type.full_name}"
        headers = {p["name"] for p in op["parameters"]}
        anonymous = f"{method.containing_service.name}.{method.name}" in routes.ANONYMOUS
        if method.containing_service.name == "LogicInt":
            assert op["security"] == [{"internalSecret": []}]
        elif not anonymous:
            assert {"user_id", "device_id", "token"} <= headers


def _json_type(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return {"$ref": f"#/components/schemas/{field.message_type.full_name}"}
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"$ref": f"#/components/schemas/{field.enum_type.full_name}"}
    return {
        FieldDescriptor.TYPE_INT64: ["string", "integer"],
        FieldDescriptor.TYPE_INT32: "integer",
        FieldDescriptor.TYPE_BOOL: "boolean",
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BYTES: "string",
    }[field.type]


def _check_message(schemas: dict[str, Any], message: Descriptor) -> None:
    schema = schemas[message.full_name]
    assert set(schema["properties"]) == {f.json_name for f in message.fields}, message.full_name
    for field in message.fields:
        prop = schema["properties"][field.json_name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            assert prop["type"] == "object", field.full_name
            continue
        if field.is_repeated:
            assert prop["type"] == "array", field.full_name
            prop = prop["items"]
        expected = _json_type(field)
        assert (prop if isinstance(expected, dict) else prop["type"]) == expected, field.full_name


def test_schemas_match_the_messages() -> None:
    schemas = openapi.build()["components"]["schemas"]
    seen = 0
    for route in routes.routes():
        for message in (route.request.DESCRIPTOR, route.response.DESCRIPTOR):
            _check_message(schemas, message)
            seen += 1
    for name, schema in schemas.items():
        if schema.get("enum"):
            pool_enum = logic_ext_pb2.DESCRIPTOR.pool.FindEnumTypeByName(name)
            assert schema["enum"] == [v.name for v in pool_enum.values]
        elif name != "Error":
            _check_message(schemas, logic_ext_pb2.DESCRIPTOR.pool.FindMessageTypeByName(name))
    assert seen == 2 * len(routes.routes())


def test_docs_openapi_json_is_current() -> None:
    assert openapi.DOC_PATH.read_text() == openapi.dumps(openapi.build()), "run `make web`"


def test_committed_page_build_matches_its_sources() -> None:
    built = build.outputs()
    committed = {p.name: p.read_bytes() for p in build.STATIC_DIR.iterdir() if p.is_file()}
    assert committed == built, "internal/web/static/ differs from web/: run `make web`"


def test_page_protobuf_table_matches_the_protos() -> None:
    source = (build.SOURCE_DIR / "js" / "proto.js").read_text()
    table = re.search(r"/\* schemas:begin \*/\s*const SCHEMAS = (\{.*?\});\s*/\* schemas:end \*/", source, re.S)
    assert table, "proto.js lost its schema markers"
    schemas = json.loads(table.group(1))
    pool = connect_ext_pb2.DESCRIPTOR.pool
    assert push_ext_pb2.DESCRIPTOR.pool is pool
    scalar = {
        FieldDescriptor.TYPE_INT64: "int64",
        FieldDescriptor.TYPE_INT32: "int32",
        FieldDescriptor.TYPE_BOOL: "bool",
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BYTES: "bytes",
        FieldDescriptor.TYPE_ENUM: "enum",
    }
    for name, fields in schemas.items():
        message = pool.FindMessageTypeByName(f"pb.{name}")
        expected = [
            [f.number, f.json_name, f.message_type.name if f.message_type else scalar[f.type]]
            + ([True] if f.is_repeated else [])
            for f in message.fields
        ]
        assert fields == expected, name
