"""The wire contract (docs/protocol.md sections 1 and 2) as the generated code sees it.

Checks that the committed generated modules in ``pkg/pb`` match ``proto/``, and
that field numbers and types, service method paths and enum values are exactly
those of the original gim protocol.
"""

from __future__ import annotations

import pathlib

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from gim.pkg import protogen
from gim.pkg.pb import (
    connect_ext_pb2,
    connect_int_pb2,
    logic_ext_pb2,
    logic_int_pb2,
    push_ext_pb2,
    user_ext_pb2,
    user_int_pb2,
)

FILES: list[FileDescriptor] = [
    module.DESCRIPTOR
    for module in (
        connect_ext_pb2,
        connect_int_pb2,
        logic_ext_pb2,
        logic_int_pb2,
        push_ext_pb2,
        user_ext_pb2,
        user_int_pb2,
    )
]

_SCALARS = {
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
}


def _type_name(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return field.message_type.full_name
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.full_name
    return _SCALARS[field.type]


def _describe(field: FieldDescriptor) -> str:
    """Render a field's type as docs/protocol.md writes it: int64, repeated pb.Message, map<..>."""
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        entry = field.message_type.fields_by_name
        return f"map<{_type_name(entry['key'])}, {_type_name(entry['value'])}>"
    prefix = "repeated " if field.is_repeated else ""
    return prefix + _type_name(field)


def _message(full_name: str) -> Descriptor:
    assert full_name.startswith("pb."), full_name
    name = full_name.removeprefix("pb.")
    found = [f.message_types_by_name[name] for f in FILES if name in f.message_types_by_name]
    assert len(found) == 1, f"{full_name} defined {len(found)} times"
    return found[0]


def test_generated_code_is_up_to_date(tmp_path: pathlib.Path) -> None:
    hint = "generated code in pkg/pb is stale: run `make proto` and commit the result"
    written = protogen.generate(tmp_path)
    assert written, "protogen generated nothing"
    committed_dir = protogen.DEFAULT_OUT_DIR
    fresh = {p.name: p for p in tmp_path.iterdir() if p.is_file()}
    committed = {p.name: p for p in committed_dir.iterdir() if p.is_file() and p.name != "__init__.py"}
    assert sorted(fresh) == sorted(committed), hint
    for name in sorted(fresh):
        assert fresh[name].read_bytes() == committed[name].read_bytes(), f"{name}: {hint}"


def test_every_proto_is_generated() -> None:
    stems = [p.stem for p in protogen.proto_files()]
    assert stems == sorted(["connect_ext", "connect_int", "logic_ext", "logic_int", "push_ext", "user_ext", "user_int"])
    assert [f.name for f in FILES] == [f"{stem}.proto" for stem in stems]
    assert all(f.package == "pb" for f in FILES)


def test_message_names_are_unique_across_files() -> None:
    names = [name for f in FILES for name in f.message_types_by_name]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates


# (message full name, field name, number, type) copied from docs/protocol.md.
FIELDS: list[tuple[str, str, int, str]] = [
    # connect_ext: Message
    ("pb.Message", "sender", 1, "pb.Sender"),
    ("pb.Message", "receiver_type", 2, "pb.ReceiverType"),
    ("pb.Message", "receiver_id", 3, "int64"),
    ("pb.Message", "to_user_ids", 4, "repeated int64"),
    ("pb.Message", "message_type", 5, "pb.MessageType"),
    ("pb.Message", "message_content", 6, "bytes"),
    ("pb.Message", "seq", 7, "int64"),
    ("pb.Message", "send_time", 8, "int64"),
    ("pb.Message", "status", 9, "pb.MessageStatus"),
    ("pb.Sender", "sender_type", 1, "pb.SenderType"),
    ("pb.Sender", "sender_id", 2, "int64"),
    ("pb.Sender", "avatar_url", 3, "string"),
    ("pb.Sender", "nickname", 4, "string"),
    ("pb.Sender", "extra", 5, "string"),
    # connect_ext: packets
    ("pb.Input", "type", 1, "pb.PackageType"),
    ("pb.Input", "request_id", 2, "int64"),
    ("pb.Input", "data", 3, "bytes"),
    ("pb.Output", "type", 1, "pb.PackageType"),
    ("pb.Output", "request_id", 2, "int64"),
    ("pb.Output", "code", 3, "int32"),
    ("pb.Output", "message", 4, "string"),
    ("pb.Output", "data", 5, "bytes"),
    ("pb.SignInInput", "device_id", 1, "int64"),
    ("pb.SignInInput", "user_id", 2, "int64"),
    ("pb.SignInInput", "token", 3, "string"),
    ("pb.SyncInput", "seq", 1, "int64"),
    ("pb.SyncOutput", "messages", 1, "repeated pb.Message"),
    ("pb.SyncOutput", "has_more", 2, "bool"),
    ("pb.SubscribeRoomInput", "room_id", 1, "int64"),
    ("pb.SubscribeRoomInput", "seq", 2, "int64"),
    ("pb.MessageSend", "message", 1, "pb.Message"),
    ("pb.MessageACK", "device_ack", 2, "int64"),
    ("pb.MessageACK", "receive_time", 3, "int64"),
    # connect_ext: message bodies
    ("pb.File", "id", 12, "int64"),
    ("pb.File", "name", 13, "string"),
    ("pb.File", "size", 14, "int64"),
    ("pb.File", "url", 15, "string"),
    ("pb.Location", "latitude", 2, "double"),
    ("pb.Location", "longitude", 3, "double"),
    ("pb.Command", "code", 1, "int32"),
    ("pb.Command", "data", 2, "bytes"),
    ("pb.Voice", "size", 2, "int32"),
    # logic_ext
    ("pb.RegisterDeviceReq", "type", 2, "int32"),
    ("pb.RegisterDeviceReq", "sdk_version", 6, "string"),
    ("pb.SendMessageReq", "receiver_type", 1, "pb.ReceiverType"),
    ("pb.SendMessageReq", "receiver_id", 2, "int64"),
    ("pb.SendMessageReq", "to_user_ids", 3, "repeated int64"),
    ("pb.SendMessageReq", "message_type", 4, "pb.MessageType"),
    ("pb.SendMessageReq", "message_content", 5, "bytes"),
    ("pb.SendMessageReq", "send_time", 6, "int64"),
    ("pb.SendMessageReq", "is_persist", 7, "bool"),
    ("pb.SendMessageResp", "seq", 1, "int64"),
    ("pb.PushRoomReq", "is_persist", 5, "bool"),
    ("pb.SetFriendReq", "extra", 8, "string"),
    ("pb.SetFriendResp", "extra", 8, "string"),
    ("pb.Friend", "sex", 4, "int32"),
    ("pb.Friend", "extra", 8, "string"),
    ("pb.Group", "group_id", 1, "int64"),
    ("pb.Group", "name", 2, "string"),
    ("pb.Group", "avatar_url", 3, "string"),
    ("pb.Group", "introduction", 4, "string"),
    ("pb.Group", "user_mum", 5, "int32"),
    ("pb.Group", "extra", 6, "string"),
    ("pb.Group", "create_time", 7, "int64"),
    ("pb.Group", "update_time", 8, "int64"),
    ("pb.GroupMember", "member_type", 6, "pb.MemberType"),
    ("pb.GetGroupMembersResp", "members", 1, "repeated pb.GroupMember"),
    ("pb.AddGroupMembersResp", "user_ids", 1, "repeated int64"),
    ("pb.CreateGroupReq", "member_ids", 5, "repeated int64"),
    # logic_int
    ("pb.ConnSignInReq", "conn_addr", 4, "string"),
    ("pb.ConnSignInReq", "client_addr", 5, "string"),
    ("pb.SyncResp", "messages", 1, "repeated pb.Message"),
    ("pb.MessageACKReq", "device_ack", 3, "int64"),
    ("pb.MessageACKReq", "receive_time", 4, "int64"),
    ("pb.OfflineReq", "client_addr", 3, "string"),
    ("pb.SubscribeRoomReq", "conn_addr", 5, "string"),
    ("pb.PushAllReq", "message_content", 2, "bytes"),
    ("pb.GetDeviceResp", "device", 1, "pb.Device"),
    ("pb.Device", "device_id", 1, "int64"),
    ("pb.Device", "user_id", 2, "int64"),
    ("pb.Device", "type", 3, "int32"),
    ("pb.Device", "brand", 4, "string"),
    ("pb.Device", "model", 5, "string"),
    ("pb.Device", "system_version", 6, "string"),
    ("pb.Device", "sdk_version", 7, "string"),
    ("pb.Device", "status", 8, "int32"),
    ("pb.Device", "create_time", 9, "int64"),
    ("pb.Device", "update_time", 10, "int64"),
    ("pb.ServerStopReq", "conn_addr", 1, "string"),
    # connect_int
    ("pb.DeliverMessageReq", "device_id", 1, "int64"),
    ("pb.DeliverMessageReq", "message_send", 2, "pb.MessageSend"),
    ("pb.PushRoomMsg", "room_id", 1, "int64"),
    ("pb.PushRoomMsg", "message_send", 2, "pb.MessageSend"),
    ("pb.PushAllMsg", "message_send", 2, "pb.MessageSend"),
    # user_ext / user_int
    ("pb.SignInReq", "device_id", 3, "int64"),
    ("pb.SignInResp", "is_new", 1, "bool"),
    ("pb.SignInResp", "user_id", 2, "int64"),
    ("pb.SignInResp", "token", 3, "string"),
    ("pb.User", "sex", 3, "int32"),
    ("pb.User", "update_time", 7, "int64"),
    ("pb.SearchUserResp", "users", 1, "repeated pb.User"),
    ("pb.GetUsersReq", "user_ids", 1, "map<int64, int32>"),
    ("pb.GetUsersResp", "users", 1, "map<int64, pb.User>"),
    # push_ext
    ("pb.AddGroupMembersPush", "members", 3, "repeated pb.GroupMember"),
    ("pb.RemoveGroupMemberPush", "deleted_user_id", 3, "int64"),
    ("pb.UpdateGroupPush", "opt_name", 2, "string"),
]


@pytest.mark.parametrize(("message", "name", "number", "type_"), FIELDS)
def test_field(message: str, name: str, number: int, type_: str) -> None:
    descriptor = _message(message)
    assert name in descriptor.fields_by_name, f"{message} has no field {name}"
    field = descriptor.fields_by_name[name]
    assert (field.number, _describe(field)) == (number, type_)


# Messages whose complete field list is fixed by docs/protocol.md (no extra fields).
EXACT_FIELDS: dict[str, list[str]] = {
    "pb.Message": [
        "sender",
        "receiver_type",
        "receiver_id",
        "to_user_ids",
        "message_type",
        "message_content",
        "seq",
        "send_time",
        "status",
    ],
    "pb.Input": ["type", "request_id", "data"],
    "pb.Output": ["type", "request_id", "code", "message", "data"],
    "pb.MessageACK": ["device_ack", "receive_time"],
    "pb.File": ["id", "name", "size", "url"],
    "pb.PushAllMsg": ["message_send"],
    "pb.Device": [
        "device_id",
        "user_id",
        "type",
        "brand",
        "model",
        "system_version",
        "sdk_version",
        "status",
        "create_time",
        "update_time",
    ],
    "pb.DeliverMessageResp": [],
}


@pytest.mark.parametrize("message", sorted(EXACT_FIELDS))
def test_exact_field_list(message: str) -> None:
    assert [f.name for f in _message(message).fields] == EXACT_FIELDS[message]


METHOD_PATHS = [
    "/pb.LogicExt/RegisterDevice",
    "/pb.LogicExt/SendMessage",
    "/pb.LogicExt/PushRoom",
    "/pb.LogicExt/GetGroupMembers",
    "/pb.LogicInt/ConnSignIn",
    "/pb.LogicInt/Sync",
    "/pb.LogicInt/MessageACK",
    "/pb.LogicInt/SubscribeRoom",
    "/pb.LogicInt/PushAll",
    "/pb.LogicInt/ServerStop",
    "/pb.ConnectInt/DeliverMessage",
    "/pb.UserExt/SignIn",
    "/pb.BusinessExt/SignIn",
    "/pb.UserInt/Auth",
    "/pb.BusinessInt/GetUsers",
]


@pytest.mark.parametrize("path", METHOD_PATHS)
def test_method_path(path: str) -> None:
    _, qualified, method = path.split("/")
    package, service = qualified.split(".")
    assert package == "pb"
    services = [f.services_by_name[service] for f in FILES if service in f.services_by_name]
    assert len(services) == 1, f"service {qualified} defined {len(services)} times"
    assert method in services[0].methods_by_name, f"{path} missing"


def test_method_types() -> None:
    def io(service: str, method: str) -> tuple[str, str]:
        [m] = [f.services_by_name[service].methods_by_name[method] for f in FILES if service in f.services_by_name]
        return m.input_type.full_name, m.output_type.full_name

    assert io("LogicInt", "SendMessage") == io("LogicExt", "SendMessage")
    assert io("LogicInt", "SendMessage") == ("pb.SendMessageReq", "pb.SendMessageResp")
    assert io("LogicInt", "PushRoom") == ("pb.PushRoomReq", "pb.PushRoomResp")
    assert io("LogicInt", "MessageACK") == ("pb.MessageACKReq", "pb.MessageACKResp")
    assert io("LogicInt", "Sync") == ("pb.SyncReq", "pb.SyncResp")
    assert io("UserInt", "GetUser") == io("UserExt", "GetUser") == ("pb.GetUserReq", "pb.GetUserResp")


@pytest.mark.parametrize(("twin", "original"), [("BusinessExt", "UserExt"), ("BusinessInt", "UserInt")])
def test_business_services_mirror_user_services(twin: str, original: str) -> None:
    def methods(service: str) -> list[tuple[str, str, str]]:
        [s] = [f.services_by_name[service] for f in FILES if service in f.services_by_name]
        return [(m.name, m.input_type.full_name, m.output_type.full_name) for m in s.methods]

    assert methods(twin) == methods(original)


ENUMS: dict[str, dict[str, int]] = {
    "PackageType": {
        "PT_UNKNOWN": 0,
        "PT_SIGN_IN": 1,
        "PT_SYNC": 2,
        "PT_HEARTBEAT": 3,
        "PT_MESSAGE": 4,
        "PT_SUBSCRIBE_ROOM": 5,
    },
    "MessageType": {
        "MT_UNKNOWN": 0,
        "MT_TEXT": 1,
        "MT_FACE": 2,
        "MT_VOICE": 3,
        "MT_IMAGE": 4,
        "MT_FILE": 5,
        "MT_LOCATION": 6,
        "MT_COMMAND": 7,
        "MT_CUSTOM": 8,
    },
    "ReceiverType": {"RT_UNKNOWN": 0, "RT_USER": 1, "RT_GROUP": 2, "RT_ROOM": 3},
    "SenderType": {"ST_UNKNOWN": 0, "ST_SYSTEM": 1, "ST_USER": 2, "ST_BUSINESS": 3},
    "MessageStatus": {"MS_UNKNOWN": 0, "MS_NORMAL": 1, "MS_RECALL": 2},
    "PushCode": {
        "PC_ADD_DEFAULT": 0,
        "PC_ADD_FRIEND": 100,
        "PC_AGREE_ADD_FRIEND": 101,
        "PC_UPDATE_GROUP": 110,
        "PC_ADD_GROUP_MEMBERS": 120,
        "PC_REMOVE_GROUP_MEMBER": 121,
    },
    "MemberType": {"GMT_UNKNOWN": 0, "GMT_ADMIN": 1, "GMT_MEMBER": 2},
}


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enum_values(enum: str) -> None:
    [descriptor] = [f.enum_types_by_name[enum] for f in FILES if enum in f.enum_types_by_name]
    assert {v.name: v.number for v in descriptor.values} == ENUMS[enum]


def test_sign_in_input_bytes() -> None:
    sign_in = connect_ext_pb2.SignInInput(device_id=1, user_id=2, token="t")
    packet = connect_ext_pb2.Input(
        type=connect_ext_pb2.PT_SIGN_IN, request_id=5, data=sign_in.SerializeToString()
    ).SerializeToString()
    inner = (
        b"\x08\x01"  # field 1 (device_id), varint 1
        b"\x10\x02"  # field 2 (user_id), varint 2
        b"\x1a\x01t"  # field 3 (token), length 1, "t"
    )
    expected = (
        b"\x08\x01"  # field 1 (type), varint PT_SIGN_IN = 1
        b"\x10\x05"  # field 2 (request_id), varint 5
        b"\x1a\x07" + inner  # field 3 (data), length 7
    )
    assert packet == expected
    parsed = connect_ext_pb2.Input.FromString(expected)
    assert connect_ext_pb2.SignInInput.FromString(parsed.data) == sign_in


def test_push_all_msg_uses_field_two() -> None:
    message = connect_ext_pb2.Message(seq=1)
    wire = connect_int_pb2.PushAllMsg(message_send=connect_ext_pb2.MessageSend(message=message)).SerializeToString()
    assert wire == b"\x12\x04\x0a\x02\x38\x01"  # field 2 > field 1 > field 7 (seq) = 1


def test_sync_resp_is_sync_output_on_the_wire() -> None:
    """connect passes LogicInt.Sync's one-page answer on as the PT_SYNC data without parsing
    it (the read-ahead fields come only when connect asks for `pages`)."""

    def fields(message: str) -> list[tuple[str, int, str]]:
        return [(f.name, f.number, _type_name(f)) for f in _message(message).fields]

    assert fields("pb.SyncResp")[:2] == fields("pb.SyncOutput")
    message = connect_ext_pb2.Message(seq=3, message_content=b"x")
    wire = logic_int_pb2.SyncResp(messages=[message], has_more=True).SerializeToString()
    assert connect_ext_pb2.SyncOutput.FromString(wire) == connect_ext_pb2.SyncOutput(messages=[message], has_more=True)
