"""Server notifications read as sentences, with names, the reader as "you"."""

from __future__ import annotations

from gim.client.notices import sentence
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import push_ext_pb2 as px


def test_every_push_code_reads_as_a_sentence() -> None:
    ann = dict(opt_id=3, opt_name="Ann")
    assert (
        sentence(px.AddFriendPush(friend_id=3, nickname="Ann", description="hi"))
        == 'Ann (3) asks to be your friend: "hi"'
    )
    assert sentence(px.AddFriendPush(friend_id=3)) == "User 3 asks to be your friend"
    assert sentence(px.AgreeAddFriendPush(friend_id=3, nickname="Ann")) == "Ann (3) accepted your friend request"
    assert (
        sentence(px.UpdateGroupPush(**ann, name="Club", introduction="books"), group_id=9)
        == 'Ann (3) updated group 9: name "Club", introduction "books"'
    )
    members = [
        lx.GroupMember(user_id=5, nickname="Bo"),
        lx.GroupMember(user_id=4),
        lx.GroupMember(user_id=6, nickname="Cy"),
    ]
    assert (
        sentence(px.AddGroupMembersPush(**ann, members=members), group_id=9, me=4)
        == "Ann (3) added you, Bo (5) and Cy (6) to group 9"
    )
    assert (
        sentence(px.AddGroupMembersPush(**ann, members=members[:1]), group_id=9, me=3) == "You added Bo (5) to group 9"
    )
    removed = px.RemoveGroupMemberPush(**ann, deleted_user_id=5)
    assert sentence(removed, group_id=9) == "Ann (3) removed user 5 from group 9"
    assert sentence(removed, group_id=9, names={5: "Bo"}) == "Ann (3) removed Bo (5) from group 9"
    assert sentence(removed, group_id=9, me=5) == "Ann (3) removed you from group 9"
    assert sentence(px.RemoveGroupMemberPush(**ann, deleted_user_id=3), group_id=9) == "Ann (3) left group 9"
