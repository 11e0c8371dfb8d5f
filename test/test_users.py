"""The business service through real gRPC: UserExt and UserInt, and their 2021 names."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from gim.pkg import rpc
from gim.pkg.errors import Code
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.pb import user_ext_pb2_grpc as ux_grpc
from gim.pkg.pb import user_int_pb2 as ui
from gim.pkg.pb import user_int_pb2_grpc as ui_grpc

if TYPE_CHECKING:
    from gimtest.callables import ExpectCode
    from gimtest.cluster import Cluster


async def test_profile_get_and_update(cluster: Cluster, expect_code: ExpectCode) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    update = ux.UpdateUserReq(nickname="Alice 'A' \"x\"", sex=2, avatar_url="https://a/b.png", extra='{"k": 1}')
    await api.call(api.users.UpdateUser, update, alice)
    user = (await api.call(api.users.GetUser, ux.GetUserReq(user_id=alice.user_id), bob)).user
    assert (user.user_id, user.nickname, user.sex, user.avatar_url, user.extra) == (
        alice.user_id,
        "Alice 'A' \"x\"",
        2,
        "https://a/b.png",
        '{"k": 1}',
    )
    assert user.create_time > 0 and user.update_time >= user.create_time

    for bad in (
        ux.UpdateUserReq(nickname="n" * 51),
        ux.UpdateUserReq(sex=3),
        ux.UpdateUserReq(avatar_url="a" * 256),
        ux.UpdateUserReq(extra="e" * 1025),
    ):
        await expect_code(api.call(api.users.UpdateUser, bad, alice), Code.BAD_REQUEST)
    after = (await api.call(api.users.GetUser, ux.GetUserReq(user_id=alice.user_id), alice)).user
    assert after.nickname == user.nickname, "refused updates changed nothing"
    await expect_code(api.call(api.users.GetUser, ux.GetUserReq(user_id=10**15), alice), Code.USER_NOT_FOUND)
    await expect_code(api.call(api.users.GetUser, ux.GetUserReq(user_id=0), alice), Code.BAD_REQUEST)
    await expect_code(api.call(api.users.GetUser, ux.GetUserReq(user_id=alice.user_id)), Code.UNAUTHORIZED)


async def test_search_is_plain_text_and_bounded(cluster: Cluster) -> None:
    api = cluster.api
    tag = uuid.uuid4().hex[:8]
    tricky = f"{tag} O'Brien\"; DROP TABLE user;-- 100%_"
    (me,) = await cluster.new_user(nickname=tricky)
    found = (await api.call(api.users.SearchUser, ux.SearchUserReq(key=tricky), me)).users
    assert [u.user_id for u in found] == [me.user_id]
    # % and _ are matched as themselves, not as wildcards.
    assert (await api.call(api.users.SearchUser, ux.SearchUserReq(key=f"{tag} %"), me)).users == []
    assert (await api.call(api.users.SearchUser, ux.SearchUserReq(key="100%_"), me)).users[0].user_id == me.user_id

    crowd = f"crowd{tag}"
    for i in range(cluster.business.config.search_limit + 3):
        await cluster.new_user(nickname=f"{crowd} {i}")
    many = (await api.call(api.users.SearchUser, ux.SearchUserReq(key=crowd), me)).users
    assert len(many) == cluster.business.config.search_limit
    assert (await api.call(api.users.SearchUser, ux.SearchUserReq(key=""), me)).users == []


async def test_user_int_auth_and_lookups(cluster: Cluster, expect_code: ExpectCode) -> None:
    (alice,) = await cluster.new_user(nickname="Alice")
    (bob,) = await cluster.new_user(nickname="Bob")
    stub = cluster.user_int
    await rpc.call(stub.Auth, ui.AuthReq(user_id=alice.user_id, device_id=alice.device_id, token=alice.token), 10.0)
    await expect_code(
        rpc.call(stub.Auth, ui.AuthReq(user_id=alice.user_id, device_id=alice.device_id, token=bob.token), 10.0),
        Code.UNAUTHORIZED,
    )
    await expect_code(
        rpc.call(stub.Auth, ui.AuthReq(user_id=alice.user_id, device_id=bob.device_id, token=alice.token), 10.0),
        Code.UNAUTHORIZED,
    )
    one = await rpc.call(stub.GetUser, ux.GetUserReq(user_id=bob.user_id), 10.0)
    assert one.user.nickname == "Bob"
    many = await rpc.call(stub.GetUsers, ui.GetUsersReq(user_ids={alice.user_id: 0, bob.user_id: 0, 10**15: 0}), 10.0)
    assert {i: u.nickname for i, u in many.users.items()} == {alice.user_id: "Alice", bob.user_id: "Bob"}


async def test_2021_service_names_answer(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user(nickname="Old client")
    ext_channel = rpc.channel(f"127.0.0.1:{cluster.business.ext_port}")
    int_channel = rpc.channel(f"127.0.0.1:{cluster.business.int_port}")
    try:
        ext = ux_grpc.BusinessExtStub(ext_channel)
        user = await rpc.call(ext.GetUser, ux.GetUserReq(user_id=alice.user_id), 10.0, alice.metadata())
        assert user.user.nickname == "Old client"
        int_ = ui_grpc.BusinessIntStub(int_channel)
        await rpc.call(int_.Auth, ui.AuthReq(user_id=alice.user_id, device_id=alice.device_id, token=alice.token), 10.0)
    finally:
        await ext_channel.close()
        await int_channel.close()
