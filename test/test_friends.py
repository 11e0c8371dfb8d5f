"""Friends through real gRPC: application, push, agreement, remarks, the list, bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import push_ext_pb2 as px

if TYPE_CHECKING:
    from gimtest.callables import DecodeCommand, ExpectCode
    from gimtest.cluster import Cluster


async def friends_of(cluster, creds) -> dict[int, lx.Friend]:  # type: ignore[no-untyped-def]
    resp = await cluster.api.call(cluster.api.logic.GetFriends, lx.GetFriendsReq(), creds)
    return {f.user_id: f for f in resp.friends}


async def test_apply_agree_and_list(cluster: Cluster, command: DecodeCommand, expect_code: ExpectCode) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user(nickname="Alice")
    (bob,) = await cluster.new_user(nickname="Bob")
    alice_conn = await cluster.online(alice)
    bob_conn = await cluster.online(bob)
    try:
        await api.call(
            api.logic.AddFriend, lx.AddFriendReq(friend_id=bob.user_id, remarks="B", description="hi, it's me"), alice
        )
        code, push = command(await bob_conn.next_message(), px.AddFriendPush)
        assert code == px.PC_ADD_FRIEND
        assert (push.friend_id, push.nickname, push.description) == (alice.user_id, "Alice", "hi, it's me")
        assert await friends_of(cluster, alice) == {}, "an application is not a friendship"
        # Applying again refreshes the application; it is not an error.
        await api.call(api.logic.AddFriend, lx.AddFriendReq(friend_id=bob.user_id), alice)

        await api.call(api.logic.AgreeAddFriend, lx.AgreeAddFriendReq(user_id=alice.user_id, remarks="A"), bob)
        pushes = [await alice_conn.next_message()]
        code, agreed = command(pushes[0], px.AgreeAddFriendPush)
        assert code == px.PC_AGREE_ADD_FRIEND
        assert (agreed.friend_id, agreed.nickname) == (bob.user_id, "Bob")

        alice_friends = await friends_of(cluster, alice)
        assert list(alice_friends) == [bob.user_id]
        assert (alice_friends[bob.user_id].nickname, alice_friends[bob.user_id].remarks) == ("Bob", "")
        bob_friends = await friends_of(cluster, bob)
        assert (bob_friends[alice.user_id].nickname, bob_friends[alice.user_id].remarks) == ("Alice", "A")

        await expect_code(
            api.call(api.logic.AddFriend, lx.AddFriendReq(friend_id=bob.user_id), alice), Code.ALREADY_FRIENDS
        )
        await expect_code(
            api.call(api.logic.AddFriend, lx.AddFriendReq(friend_id=alice.user_id), bob), Code.ALREADY_FRIENDS
        )
        await expect_code(
            api.call(api.logic.AgreeAddFriend, lx.AgreeAddFriendReq(user_id=alice.user_id), bob), Code.ALREADY_FRIENDS
        )

        # Remarks and extra are plain text, quotes and SQL keywords included.
        tricky = "Robert'); DROP TABLE friend;-- \"%_\\"
        resp = await api.call(
            api.logic.SetFriend, lx.SetFriendReq(friend_id=bob.user_id, remarks=tricky[:50], extra=tricky), alice
        )
        assert (resp.friend_id, resp.remarks, resp.extra) == (bob.user_id, tricky[:50], tricky)
        stored = (await friends_of(cluster, alice))[bob.user_id]
        assert (stored.remarks, stored.extra) == (tricky[:50], tricky)

        # The pushes are stored messages too: the applicant's sync has the agreement.
        synced = await cluster.sync_all(alice_conn, 0)
        assert [m.seq for m in synced][-1:] == [pushes[0].seq]
        assert synced[-1].sender.sender_type == cx.ST_SYSTEM
    finally:
        await alice_conn.close()
        await bob_conn.close()


async def test_friend_bad_input(cluster: Cluster, expect_code: ExpectCode) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    add = api.logic.AddFriend
    await expect_code(api.call(add, lx.AddFriendReq(friend_id=10**15), alice), Code.USER_NOT_FOUND)
    await expect_code(api.call(add, lx.AddFriendReq(friend_id=0), alice), Code.BAD_REQUEST)
    await expect_code(api.call(add, lx.AddFriendReq(friend_id=-5), alice), Code.BAD_REQUEST)
    await expect_code(api.call(add, lx.AddFriendReq(friend_id=alice.user_id), alice), Code.BAD_REQUEST)
    await expect_code(api.call(add, lx.AddFriendReq(friend_id=bob.user_id, remarks="r" * 51), alice), Code.BAD_REQUEST)
    await expect_code(
        api.call(add, lx.AddFriendReq(friend_id=bob.user_id, description="d" * 256), alice), Code.BAD_REQUEST
    )
    # Nothing was applied: Bob has no application from Alice to agree to.
    await expect_code(
        api.call(api.logic.AgreeAddFriend, lx.AgreeAddFriendReq(user_id=alice.user_id), bob), Code.BAD_REQUEST
    )
    await expect_code(api.call(api.logic.SetFriend, lx.SetFriendReq(friend_id=bob.user_id), alice), Code.BAD_REQUEST)
    await api.call(add, lx.AddFriendReq(friend_id=bob.user_id), alice)
    await expect_code(
        api.call(api.logic.SetFriend, lx.SetFriendReq(friend_id=bob.user_id, extra="x" * 1025), alice), Code.BAD_REQUEST
    )
    await expect_code(api.call(api.logic.GetFriends, lx.GetFriendsReq()), Code.UNAUTHORIZED)
