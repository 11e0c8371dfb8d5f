"""The interactive `gim client`: typed commands in, messages and notifications out.

Every command checks its arguments first and answers bad input with one line starting
with "!" (a refusal from the server too, with its gim code); the session goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import Awaitable, Callable

from grpc import aio

from gim.client.client import Client
from gim.client.events import Event, describe, text
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import push_ext_pb2 as px

_log = logging.getLogger("gim.client.chat")

ID_MAX = 2**63 - 1

HELP = """commands (ids are numbers; /friends, /groups and /members show them):
  /to USER text              send to a user; plain lines then go to the same user
  /group GROUP text          send to a group; plain lines then go to the group
  /room ROOM text            post to a room; plain lines then go to the room
  /join ROOM                 receive a room's messages (one room at a time; /join 0 leaves)
  /friends                   list your friends
  /add-friend USER [words]   ask a user to be your friend, with an optional note
  /accept USER               accept a user's friend request
  /groups                    list your groups
  /create-group NAME [USER...]  create a group ("quote a name" with spaces), with members
  /add-members GROUP USER... add users to a group
  /members GROUP             list a group's members
  /nick NAME                 change your nickname
  /help                      this list
  /quit                      leave (Ctrl-D too)"""


class BadInput(ValueError):
    """What the user typed cannot be run; the message says why, in one line."""


def parse_id(value: str, what: str, *, zero: bool = False) -> int:
    """`value` as a positive id (`zero`: 0 allowed too); BadInput naming `what` otherwise."""
    if not value.isdigit():
        raise BadInput(f"{what} must be a number, got {value!r}")
    number = int(value)
    if number > ID_MAX or (number == 0 and not zero):
        raise BadInput(f"{what} must be a number from {0 if zero else 1} to {ID_MAX}, got {value}")
    return number


@dataclasses.dataclass(frozen=True)
class Target:
    kind: str  # "user", "group" or "room"
    ident: int


class Chat:
    """One signed-in terminal session. `say` prints a line (above the prompt on a terminal)."""

    def __init__(self, client: Client, nickname: str, say: Callable[[str], None] = print) -> None:
        self.client = client
        self.nickname = nickname
        self.say = say
        self.names: dict[int, str] = {}  # nicknames seen, for users a notice names by id only
        self.target: Target | None = None
        self.commands: dict[str, Callable[[str], Awaitable[None]]] = {
            "/to": self._to,
            "/group": self._group,
            "/room": self._room,
            "/join": self._join,
            "/friends": self._friends,
            "/add-friend": self._add_friend,
            "/accept": self._accept,
            "/groups": self._groups,
            "/create-group": self._create_group,
            "/add-members": self._add_members,
            "/members": self._members,
            "/nick": self._nick,
            "/help": self._help,
        }

    @property
    def me(self) -> int:
        return self.client.user_id

    # -- incoming ------------------------------------------------------------------------

    def render(self, event: Event) -> str:
        if event.sender.type == cx.ST_USER and event.sender.nickname:
            self.names[event.sender.id] = event.sender.nickname
        self._learn_names(event.push)
        line = describe(event, self.me, self.nickname, self.names)
        if isinstance(event.push, px.AddFriendPush):
            line += f" (/accept {event.push.friend_id} to agree)"
        return line

    async def print_incoming(self) -> None:
        async for event in self.client:
            self.say(self.render(event))

    # -- typed commands ------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Run one typed line; False when it asks to leave."""
        line = line.strip()
        if line in ("/quit", "/exit"):
            return False
        try:
            await self._dispatch(line)
        except BadInput as exc:
            self.say(f"! {exc}")
        except GimError as exc:
            self.say(f"! error {int(exc.code)}: {exc.message}")
        except aio.AioRpcError as exc:
            self.say(f"! {exc.code().name}: {exc.details()}")
        except (ConnectionError, TimeoutError) as exc:
            self.say(f"! not connected right now ({exc or type(exc).__name__}); try again in a moment")
        except Exception as exc:
            _log.debug("command failed: %s", line, exc_info=True)
            self.say(f"! {line.split(' ')[0]} failed: {exc or type(exc).__name__}")
        return True

    async def _dispatch(self, line: str) -> None:
        if not line:
            return
        name, _, rest = line.partition(" ")
        if name in self.commands:
            await self.commands[name](rest.strip())
        elif line.startswith("/"):
            raise BadInput(f"unknown command {name}; /help lists them")
        elif self.target is None:
            raise BadInput("no conversation yet: start one with /to USER text, /group GROUP text or /room ROOM text")
        else:
            await self._send(self.target, line)

    async def _send(self, target: Target, value: str) -> None:
        if target.kind == "group":
            await self.client.send_group_text(target.ident, value)
        elif target.kind == "room":
            await self.client.call(self.client.api.push_room, target.ident, text(value))
            if self.client.room_id != target.ident:  # otherwise the room shows it
                self.say(f"> posted to room {target.ident} (/join {target.ident} to see the room)")
        else:
            await self.client.send_text(target.ident, value)
        self.target = target  # the message itself shows when the server has it

    async def _message(self, kind: str, rest: str, usage: str) -> None:
        ident, _, value = rest.partition(" ")
        if not ident or not value.strip():
            raise BadInput(f"usage: {usage}")
        await self._send(Target(kind, parse_id(ident, f"{kind} id")), value.strip())

    async def _to(self, rest: str) -> None:
        await self._message("user", rest, "/to USER text")

    async def _group(self, rest: str) -> None:
        await self._message("group", rest, "/group GROUP text")

    async def _room(self, rest: str) -> None:
        await self._message("room", rest, "/room ROOM text (/join ROOM to receive a room)")

    async def _join(self, rest: str) -> None:
        if not rest or " " in rest:
            raise BadInput("usage: /join ROOM (/join 0 leaves the room)")
        room_id = parse_id(rest, "room id", zero=True)
        await self.client.subscribe_room(room_id)
        self.say(f"> in room {room_id}" if room_id else "> left the room")

    async def _friends(self, rest: str) -> None:
        self._no_arguments("/friends", rest)
        friends = await self.client.call(self.client.api.get_friends)
        for f in friends:
            self.names[f.user_id] = f.nickname
            self.say(f"  {f.user_id}  {f.nickname or '(no nickname)'}  {f.remarks}".rstrip())
        self.say(f"> {len(friends)} friends" if friends else "> no friends yet: /add-friend USER")

    async def _add_friend(self, rest: str) -> None:
        ident, _, note = rest.partition(" ")
        if not ident:
            raise BadInput("usage: /add-friend USER [a note for them]")
        friend_id = parse_id(ident, "user id")
        await self.client.call(self.client.api.add_friend, friend_id, description=note.strip())
        self.say(f"> asked user {friend_id} to be your friend")

    async def _accept(self, rest: str) -> None:
        if not rest or " " in rest:
            raise BadInput("usage: /accept USER")
        user_id = parse_id(rest, "user id")
        await self.client.call(self.client.api.agree_add_friend, user_id)
        self.say(f"> you and {self._person(user_id)} are friends now")

    async def _groups(self, rest: str) -> None:
        self._no_arguments("/groups", rest)
        groups = await self.client.call(self.client.api.get_groups)
        for g in groups:
            self.say(f"  {g.group_id}  {g.name}  ({g.user_mum} members)")
        self.say(f"> {len(groups)} groups" if groups else "> no groups yet: /create-group NAME [USER...]")

    async def _create_group(self, rest: str) -> None:
        words = _words(rest)
        if not words:
            raise BadInput('usage: /create-group NAME [USER...] ("quote a name" with spaces)')
        name, members = words[0], [parse_id(w, "user id") for w in words[1:]]
        group_id = await self.client.call(self.client.api.create_group, name, members)
        self.target = Target("group", group_id)
        self.say(f'> created group {group_id} "{name}" with {len(set(members) - {self.me}) + 1} members; '
                 "plain lines now go there")  # fmt: skip

    async def _add_members(self, rest: str) -> None:
        words = _words(rest)
        if len(words) < 2:
            raise BadInput("usage: /add-members GROUP USER...")
        group_id = parse_id(words[0], "group id")
        user_ids = [parse_id(w, "user id") for w in words[1:]]
        already = set(await self.client.call(self.client.api.add_group_members, group_id, user_ids))
        added = [u for u in dict.fromkeys(user_ids) if u not in already]
        parts = [f"added {', '.join(self._person(u) for u in added)}"] if added else []
        parts += [f"already members: {', '.join(self._person(u) for u in sorted(already))}"] if already else []
        self.say(f"> group {group_id}: {'; '.join(parts)}")

    async def _members(self, rest: str) -> None:
        if not rest or " " in rest:
            raise BadInput("usage: /members GROUP")
        group_id = parse_id(rest, "group id")
        members = await self.client.call(self.client.api.get_group_members, group_id)
        for m in members:
            self.names[m.user_id] = m.nickname
            role = "  admin" if m.member_type == lx.GMT_ADMIN else ""
            self.say(f"  {m.user_id}  {m.nickname or '(no nickname)'}{role}")
        self.say(f"> {len(members)} members in group {group_id}")

    async def _nick(self, rest: str) -> None:
        if not rest:
            raise BadInput("usage: /nick NAME")
        me = await self.client.call(self.client.api.get_user, self.me)
        # UpdateUser sets every field: keep the others as they are
        await self.client.call(self.client.api.update_user, rest, me.sex, me.avatar_url, me.extra)
        self.nickname = (await self.client.call(self.client.api.get_user, self.me)).nickname
        self.say(f"> you are {self.nickname} now")

    async def _help(self, _rest: str) -> None:
        self.say(HELP)

    # -- helpers -------------------------------------------------------------------------

    def _learn_names(self, push: object) -> None:
        """Remember the nicknames a notification carries."""
        named: list[tuple[int, str]] = []
        if isinstance(push, (px.AddFriendPush, px.AgreeAddFriendPush)):
            named.append((push.friend_id, push.nickname))
        elif isinstance(push, (px.UpdateGroupPush, px.AddGroupMembersPush, px.RemoveGroupMemberPush)):
            named.append((push.opt_id, push.opt_name))
            if isinstance(push, px.AddGroupMembersPush):
                named += [(m.user_id, m.nickname) for m in push.members]
        self.names.update((user_id, name) for user_id, name in named if name and user_id != self.me)

    def _person(self, user_id: int) -> str:
        name = self.names.get(user_id)
        return f"{name} ({user_id})" if name else f"user {user_id}"

    @staticmethod
    def _no_arguments(command: str, rest: str) -> None:
        if rest:
            raise BadInput(f"{command} takes no arguments")


def _words(rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as exc:  # an unclosed quote
        raise BadInput(f"cannot read that: {exc}") from None
