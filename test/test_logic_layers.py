"""Logic's layers without servers: the domain speaks no protobuf, its enums are the wire's,
the fan-out drives its ports, the edges encode what the 2021 wire carries, and the
MySQL/SQLite spellings come from one place."""

from __future__ import annotations

import ast
import asyncio
import gc
from collections.abc import Collection, Iterable
from pathlib import Path

import pytest
from sqlalchemy.dialects import mysql, sqlite

from gim.internal.logic import values
from gim.internal.logic.edge import pb_values
from gim.internal.logic.edge.event_encoding import COMMAND_DATA_MAX, ProtobufEvents
from gim.internal.logic.edge.message_encoding import ProtobufMessages, check_fits
from gim.internal.logic.fanout import FanOut
from gim.internal.logic.ports import Target
from gim.internal.logic.values import Author, MemberView, MessageRow, OnlineDevice, SenderType, User
from gim.pkg import db, schema
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2, push_ext_pb2
from gim.pkg.pb import logic_ext_pb2 as ext

LOGIC = Path(__file__).resolve().parent.parent / "internal" / "logic"
# Modules outside edge/ that speak protobuf on purpose: the wiring.
EDGES = {"server.py"}


def _parse(path: Path) -> ast.Module:
    """CPython 3.11 keeps one AST-building depth counter per interpreter: a collection that runs
    a finalizer which formats a traceback (3.11 parses the failing line for its carets) in the
    middle of this parse moves the counter and the parse fails with "AST constructor recursion
    depth mismatch" (python/cpython#106905). With the collector paused, no Python code runs
    until the tree is built."""
    source = path.read_text()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if was_enabled:
            gc.enable()


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_nothing_below_the_servicers_imports_protobuf_or_an_edge() -> None:
    domain = [p for p in LOGIC.glob("*.py") if p.name not in EDGES]
    assert len(domain) > 15
    for path in domain:
        wrong = {m for m in _imports(path) if m.startswith(("gim.pkg.pb", "gim.internal.logic.edge", "grpc"))}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"


@pytest.mark.parametrize(
    ("domain", "wire", "prefix"),
    [
        (values.SenderType, cx.SenderType, "ST_"),
        (values.ReceiverType, cx.ReceiverType, "RT_"),
        (values.MessageType, cx.MessageType, "MT_"),
        (values.MemberType, ext.MemberType, "GMT_"),
    ],
)
def test_domain_enums_are_the_wire_numbers(domain: type, wire: object, prefix: str) -> None:
    mine = {f"{prefix}{member.name}": int(member) for member in domain}  # type: ignore[attr-defined]  # an IntEnum
    theirs = {name: number for name, number in wire.items() if number}  # type: ignore[attr-defined]  # an EnumTypeWrapper
    if prefix == "MT_":
        theirs["MT_UNKNOWN"] = 0
    assert mine == theirs
    assert values.MESSAGE_NORMAL == cx.MS_NORMAL


class FakeDevices:
    def __init__(self, online: list[OnlineDevice]) -> None:
        self._online = online

    async def online(self, user_ids: list[int]) -> list[OnlineDevice]:
        return [d for d in self._online if d.user_id in user_ids]


class FakeNodes:
    async def suspects(self, addrs: set[str]) -> set[str]:
        return {a for a in addrs if a.startswith("dead")}


class FakeProfiles:
    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    async def get_many(self, user_ids: list[int]) -> dict[int, User]:
        self.asked.append(user_ids)
        return {i: User(i, nickname=f"user {i}") for i in user_ids}


class FakeDelivery:
    def __init__(self) -> None:
        self.backlog = 0
        self.queued: list[tuple[list[Target], Collection[str]]] = []

    async def start(self, targets: Iterable[Target], suspects: Collection[str] = ()) -> asyncio.Future[int]:
        self.queued.append((list(targets), suspects))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(len(self.queued[-1][0]))
        return done


def _row(sender_type: int, sender_id: int, receiver_id: int) -> MessageRow:
    return MessageRow(0, sender_type, sender_id, cx.RT_USER, receiver_id, [], cx.MT_TEXT, b"hi", 1_700_000_000_000)


async def test_the_fan_out_pushes_each_recipient_its_seq_and_the_sending_device_only_its_mark() -> None:
    phone, laptop, other = OnlineDevice(11, 1, "n1"), OnlineDevice(12, 1, "dead:1"), OnlineDevice(21, 2, "n1")
    profiles, delivery = FakeProfiles(), FakeDelivery()
    fanout = FanOut(FakeDevices([phone, laptop, other]), FakeNodes(), profiles, delivery, ProtobufMessages())  # type: ignore[arg-type]  # fakes of the stores
    async with fanout.ordered([1, 2]) as turn:
        await turn.push(Author(SenderType.USER, 1, device_id=11), _row(SenderType.USER, 1, 2), {1: 5, 2: 9}, {})
    ((targets, suspects),) = delivery.queued
    assert suspects == {"dead:1"}
    pushed = dict(targets)
    assert pushed[phone] == 5, "the sending device: no push, its own seq moves its push order"
    for device, seq in ((laptop, 5), (other, 9)):
        what = pushed[device]
        assert isinstance(what, bytes)
        message = cx.MessageSend.FromString(what).message
        assert (message.seq, message.sender.nickname, message.message_content) == (seq, "user 1", b"hi")
    assert profiles.asked == [[1]], "the author's profile, once"


async def test_the_fan_out_of_a_message_nobody_can_receive_queues_nothing() -> None:
    delivery = FakeDelivery()
    fanout = FanOut(FakeDevices([]), FakeNodes(), FakeProfiles(), delivery, ProtobufMessages())  # type: ignore[arg-type]  # fakes of the stores
    async with fanout.ordered([2]) as turn:
        await turn.push(values.BUSINESS, _row(SenderType.BUSINESS, 0, 2), {2: 3}, {})
    assert delivery.queued == [] and turn.delivered is None


def test_the_encodings_match_protobuf() -> None:
    encode = ProtobufMessages()
    row = MessageRow(0, cx.ST_USER, 7, cx.RT_ROOM, 42, [], cx.MT_TEXT, b"room", 123)
    message = encode.room_message(row, User(7, nickname="n"), 5)
    parsed = cx.Message.FromString(message)
    assert (parsed.seq, parsed.receiver_id, parsed.sender.nickname, parsed.status) == (5, 42, "n", cx.MS_NORMAL)
    expected = connect_int_pb2.PushRoomMsg(room_id=42, message_send=cx.MessageSend(message=parsed))
    assert encode.room_broadcast(42, message) == expected.SerializeToString()
    sends = encode.message_sends(_row(cx.ST_USER, 7, 8), None, {7: 1, 8: 300})
    assert [cx.MessageSend.FromString(sends[u]).message.seq for u in (7, 8)] == [1, 300]


def test_event_contents_split_to_fit_a_frame() -> None:
    events = ProtobufEvents()
    wide = User(1, nickname="\U0001f600" * 50, avatar_url="\U0001f600" * 255, extra="\U0001f600" * 1024)
    members = [MemberView(values.Member(i, values.MemberType.MEMBER), wide) for i in range(1, 200)]
    contents = events.add_group_members(1, "opt", members)
    assert len(contents) > 1
    got = []
    for content in contents:
        command = cx.Command.FromString(content)
        assert command.code == push_ext_pb2.PC_ADD_GROUP_MEMBERS and len(command.data) <= COMMAND_DATA_MAX
        check_fits(MessageRow(0, cx.ST_SYSTEM, 0, cx.RT_GROUP, 2**63 - 1, [], cx.MT_COMMAND, content, 2**63 - 1))
        got += [m.user_id for m in push_ext_pb2.AddGroupMembersPush.FromString(command.data).members]
    assert got == list(range(1, 200))
    with pytest.raises(GimError, match="too large for one long-connection frame"):
        check_fits(MessageRow(0, cx.ST_USER, 1, cx.RT_USER, 2, [], cx.MT_CUSTOM, b"x" * 65_000, 0))


def test_the_dialect_spellings() -> None:
    upsert = db.upsert(schema.device_ack, ("user_id", "device_id"), lambda p: {"seq": p.greatest(p.new.seq, 0)})
    assert "ON DUPLICATE KEY UPDATE seq = greatest(VALUES(seq)" in str(upsert.mysql.compile(dialect=mysql.dialect()))
    on_sqlite = str(upsert.sqlite.compile(dialect=sqlite.dialect()))
    assert "ON CONFLICT (user_id, device_id) DO UPDATE SET seq = max(excluded.seq" in on_sqlite
    ignore = db.insert_ignore(schema.group_user)
    assert str(ignore.mysql.compile(dialect=mysql.dialect())).startswith("INSERT IGNORE INTO group_user")
    assert "ON CONFLICT DO NOTHING" in str(ignore.sqlite.compile(dialect=sqlite.dialect()))
    query = db.locking(db.through_primary_key(schema.seq.select(), schema.seq))
    assert str(query.compile(dialect=mysql.dialect())).endswith("FOR UPDATE")
    assert "FORCE INDEX (PRIMARY)" in str(query.compile(dialect=mysql.dialect()))
    assert "FOR UPDATE" not in str(query.compile(dialect=sqlite.dialect()))
    assert "FORCE INDEX" not in str(query.compile(dialect=sqlite.dialect()))


def test_text_limits_come_from_the_schema() -> None:
    assert schema.max_length(schema.friend.c.remarks) == 50
    assert schema.max_length(schema.user.c.extra) == 1024
    with pytest.raises(ValueError, match="no length"):
        schema.max_length(schema.seq.c.seq)


def test_the_servicers_translate_requests_and_answers_field_by_field() -> None:
    req = ext.SendMessageReq(
        receiver_type=cx.RT_GROUP, receiver_id=9, to_user_ids=[3, 4], message_type=cx.MT_TEXT,
        message_content=b"c", send_time=12, is_persist=True,
    )  # fmt: skip
    assert pb_values.outgoing(req) == values.Outgoing(cx.RT_GROUP, 9, cx.MT_TEXT, b"c", (3, 4), 12, True)
    room = pb_values.room_outgoing(ext.PushRoomReq(room_id=5, message_type=cx.MT_TEXT, message_content=b"r"))
    assert (room.receiver_type, room.receiver_id, room.is_persist) == (cx.RT_ROOM, 5, False)
    profile = pb_values.group_profile(
        ext.UpdateGroupReq(group_id=1, name="n", avatar_url="a", introduction="i", extra="e")
    )
    assert profile == values.GroupProfile("n", "a", "i", "e")
    change = ext.UpdateGroupMemberReq(group_id=1, user_id=2, member_type=ext.GMT_ADMIN, remarks="r", extra="x")
    assert pb_values.member(change) == values.Member(2, values.MemberType.ADMIN, "r", "x")
    user = User(2, nickname="nick", sex=1, avatar_url="av", extra="ux")
    member = pb_values.member_pb(MemberView(values.Member(2, values.MemberType.MEMBER, "r", "x"), user))
    assert (member.nickname, member.sex, member.user_extra, member.member_type, member.remarks) == (
        "nick",
        1,
        "ux",
        ext.GMT_MEMBER,
        "r",
    )
    friend = pb_values.friend_pb(values.Friend(2, "rem", "ext", user))
    assert (friend.user_id, friend.remarks, friend.extra, friend.nickname, friend.user_extra) == (
        2,
        "rem",
        "ext",
        "nick",
        "ux",
    )
    assert pb_values.friend_pb(values.Friend(3, "", "", None)).nickname == "", "a user business no longer knows"
    group = pb_values.group_pb(values.GroupInfo(7, "g", "a", "i", 3, "e", 100, 200))
    assert (group.group_id, group.user_mum, group.create_time) == (7, 3, 100)
