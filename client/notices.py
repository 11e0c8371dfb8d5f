"""Server notifications as one-line English sentences.

The server tells users about friend requests and group changes with messages from the
system whose content is a `Command`: `code` is a `PushCode` (100 add friend, 101 agree
add friend, 110 update group, 120 add group members, 121 remove group member) and
`data` the matching `*Push` message (proto/push_ext.proto). `sentence` renders one,
naming people by nickname and id, and the reader as "you".
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message as Proto

from gim.pkg.pb import push_ext_pb2 as px


def person(user_id: int, nickname: str = "", me: int = 0) -> str:
    """'Bob (2)', 'user 2' without a nickname, 'you' for the reader."""
    if me and user_id == me:
        return "you"
    return f"{nickname} ({user_id})" if nickname else f"user {user_id}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _listing(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def sentence(push: Proto, group_id: int = 0, me: int = 0, names: Mapping[int, str] | None = None) -> str:
    """`push` (a decoded `*Push`) as a sentence; `group_id` is the message's receiver for
    group notifications, `me` the reader's user id, `names` nicknames known elsewhere
    (for a user the push names only by id)."""
    known = names or {}
    group = f"group {group_id}" if group_id else "a group"
    if isinstance(push, px.AddFriendPush):
        said = f': "{push.description}"' if push.description else ""
        return f"{_capital(person(push.friend_id, push.nickname, me))} asks to be your friend{said}"
    if isinstance(push, px.AgreeAddFriendPush):
        return f"{_capital(person(push.friend_id, push.nickname, me))} accepted your friend request"
    if isinstance(push, px.UpdateGroupPush):
        changes = [f'name "{push.name}"'] if push.name else []
        changes += [f'introduction "{push.introduction}"'] if push.introduction else []
        changes += ["avatar"] if push.avatar_url else []
        what = f": {', '.join(changes)}" if changes else ""
        return f"{_capital(person(push.opt_id, push.opt_name, me))} updated {group}{what}"
    if isinstance(push, px.AddGroupMembersPush):
        members = sorted(push.members, key=lambda m: m.user_id != me)  # "you" first
        added = _listing([person(m.user_id, m.nickname, me) for m in members]) or "nobody"
        return f"{_capital(person(push.opt_id, push.opt_name, me))} added {added} to {group}"
    if isinstance(push, px.RemoveGroupMemberPush):
        actor = _capital(person(push.opt_id, push.opt_name, me))
        if push.deleted_user_id == push.opt_id:
            return f"{actor} left {group}"
        removed = person(push.deleted_user_id, known.get(push.deleted_user_id, ""), me)
        return f"{actor} removed {removed} from {group}"
    return f"server notification {type(push).__name__}"
