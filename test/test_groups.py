"""Groups through real gRPC: create, update, members and roles, permissions, pushes, bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import push_ext_pb2 as px

if TYPE_CHECKING:
    from gimtest.callables import DecodeCommand, ExpectCode
    from gimtest.cluster import Cluster


async def members_of(cluster, group_id: int, creds) -> dict[int, lx.GroupMember]:  # type: ignore[no-untyped-def]
    resp = await cluster.api.call(cluster.api.logic.GetGroupMembers, lx.GetGroupMembersReq(group_id=group_id), creds)
    return {m.user_id: m for m in resp.members}


async def test_group_lifecycle_with_pushes(cluster: Cluster, command: DecodeCommand, expect_code: ExpectCode) -> None:
    api, logic = cluster.api, cluster.api.logic
    (admin,) = await cluster.new_user(nickname="Admin")
    (carol,) = await cluster.new_user(nickname="Carol")
    (dave,) = await cluster.new_user(nickname="Dave")
    (erin,) = await cluster.new_user(nickname="Erin")
    carol_conn = await cluster.online(carol)
    try:
        create = lx.CreateGroupReq(
            name="Team", introduction='it\'s "ours"', member_ids=[carol.user_id, dave.user_id, carol.user_id]
        )
        group_id = (await api.call(logic.CreateGroup, create, admin)).group_id
        code, added = command(await carol_conn.next_message(), px.AddGroupMembersPush)
        assert code == px.PC_ADD_GROUP_MEMBERS and added.opt_id == admin.user_id and added.opt_name == "Admin"
        assert sorted(m.user_id for m in added.members) == sorted([carol.user_id, dave.user_id])

        group = (await api.call(logic.GetGroup, lx.GetGroupReq(group_id=group_id), carol)).group
        assert (group.name, group.introduction, group.user_mum) == ("Team", 'it\'s "ours"', 3)
        members = await members_of(cluster, group_id, carol)
        assert members[admin.user_id].member_type == lx.GMT_ADMIN
        assert members[carol.user_id].member_type == lx.GMT_MEMBER
        assert members[dave.user_id].nickname == "Dave"
        groups = (await api.call(logic.GetGroups, lx.GetGroupsReq(), dave)).groups
        assert [g.group_id for g in groups] == [group_id]

        # Only an admin updates the group; the update is pushed to every member.
        update = lx.UpdateGroupReq(group_id=group_id, name="Team 2", introduction="new")
        await expect_code(api.call(logic.UpdateGroup, update, carol), Code.NOT_IN_GROUP)
        await expect_code(api.call(logic.UpdateGroup, update, erin), Code.NOT_IN_GROUP)
        await api.call(logic.UpdateGroup, update, admin)
        code, updated = command(await carol_conn.next_message(), px.UpdateGroupPush)
        assert code == px.PC_UPDATE_GROUP and (updated.name, updated.introduction, updated.opt_id) == (
            "Team 2",
            "new",
            admin.user_id,
        )
        assert (await api.call(logic.GetGroup, lx.GetGroupReq(group_id=group_id), carol)).group.name == "Team 2"

        # A member adds members; those already in are returned.
        resp = await api.call(
            logic.AddGroupMembers,
            lx.AddGroupMembersReq(group_id=group_id, user_ids=[erin.user_id, dave.user_id]),
            carol,
        )
        assert list(resp.user_ids) == [dave.user_id]
        code, added = command(await carol_conn.next_message(), px.AddGroupMembersPush)
        assert [m.user_id for m in added.members] == [erin.user_id] and added.opt_name == "Carol"
        assert (await api.call(logic.GetGroup, lx.GetGroupReq(group_id=group_id), carol)).group.user_mum == 4

        # Roles: only an admin changes them.
        promote = lx.UpdateGroupMemberReq(
            group_id=group_id, user_id=dave.user_id, member_type=lx.GMT_ADMIN, remarks="vice"
        )
        await expect_code(api.call(logic.UpdateGroupMember, promote, carol), Code.NOT_IN_GROUP)
        await api.call(logic.UpdateGroupMember, promote, admin)
        dave_member = (await members_of(cluster, group_id, carol))[dave.user_id]
        assert (dave_member.member_type, dave_member.remarks) == (lx.GMT_ADMIN, "vice")

        # A member may not remove others, may remove itself; an admin removes others.
        await expect_code(
            api.call(logic.DeleteGroupMember, lx.DeleteGroupMemberReq(group_id=group_id, user_id=erin.user_id), carol),
            Code.NOT_IN_GROUP,
        )
        await api.call(logic.DeleteGroupMember, lx.DeleteGroupMemberReq(group_id=group_id, user_id=erin.user_id), dave)
        code, removed = command(await carol_conn.next_message(), px.RemoveGroupMemberPush)
        assert code == px.PC_REMOVE_GROUP_MEMBER and (removed.opt_id, removed.deleted_user_id) == (
            dave.user_id,
            erin.user_id,
        )
        await api.call(
            logic.DeleteGroupMember, lx.DeleteGroupMemberReq(group_id=group_id, user_id=carol.user_id), carol
        )
        code, removed = command(await carol_conn.next_message(), px.RemoveGroupMemberPush)
        assert removed.deleted_user_id == carol.user_id, "the member who leaves is told too"

        # Those who left no longer read the members or send to the group.
        await expect_code(members_of(cluster, group_id, carol), Code.NOT_IN_GROUP)
        await expect_code(api.send_message(erin, cx.RT_GROUP, group_id, b"x"), Code.NOT_IN_GROUP)
        assert sorted(await members_of(cluster, group_id, admin)) == sorted([admin.user_id, dave.user_id])
        assert (await api.call(logic.GetGroup, lx.GetGroupReq(group_id=group_id), admin)).group.user_mum == 2
        assert (await api.call(logic.GetGroups, lx.GetGroupsReq(), carol)).groups == []
    finally:
        await carol_conn.close()


async def test_group_bad_input_writes_nothing(cluster: Cluster, expect_code: ExpectCode) -> None:
    api, logic = cluster.api, cluster.api.logic
    (admin,) = await cluster.new_user()
    (other,) = await cluster.new_user()
    bad_creates = [
        (lx.CreateGroupReq(name=""), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="n" * 51), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="g", avatar_url="a" * 256), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="g", extra="e" * 1025), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="g", member_ids=[0]), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="g", member_ids=[-3]), Code.BAD_REQUEST),
        (lx.CreateGroupReq(name="g", member_ids=[10**15]), Code.USER_NOT_FOUND),
        (lx.CreateGroupReq(name="g", member_ids=list(range(1, 1002))), Code.BAD_REQUEST),
    ]
    for req, code in bad_creates:
        await expect_code(api.call(logic.CreateGroup, req, admin), code)
    assert (await api.call(logic.GetGroups, lx.GetGroupsReq(), admin)).groups == [], "nothing was created"

    group_id = (await api.call(logic.CreateGroup, lx.CreateGroupReq(name="g"), admin)).group_id
    missing = group_id + 10**9
    await expect_code(api.call(logic.GetGroup, lx.GetGroupReq(group_id=missing), admin), Code.GROUP_NOT_FOUND)
    await expect_code(api.call(logic.GetGroup, lx.GetGroupReq(group_id=0), admin), Code.BAD_REQUEST)
    await expect_code(members_of(cluster, missing, admin), Code.GROUP_NOT_FOUND)
    await expect_code(
        api.call(logic.UpdateGroup, lx.UpdateGroupReq(group_id=missing, name="x"), admin), Code.GROUP_NOT_FOUND
    )
    await expect_code(api.send_message(admin, cx.RT_GROUP, missing, b"x"), Code.GROUP_NOT_FOUND)
    add = lx.AddGroupMembersReq(group_id=group_id, user_ids=[other.user_id])
    await expect_code(api.call(logic.AddGroupMembers, add, other), Code.NOT_IN_GROUP)
    await expect_code(
        api.call(logic.AddGroupMembers, lx.AddGroupMembersReq(group_id=group_id, user_ids=[10**15]), admin),
        Code.USER_NOT_FOUND,
    )
    await expect_code(
        api.call(logic.AddGroupMembers, lx.AddGroupMembersReq(group_id=group_id, user_ids=list(range(1, 1002))), admin),
        Code.BAD_REQUEST,
    )
    await expect_code(
        api.call(logic.UpdateGroup, lx.UpdateGroupReq(group_id=group_id, name="y" * 51), admin), Code.BAD_REQUEST
    )
    role = lx.UpdateGroupMemberReq(group_id=group_id, user_id=admin.user_id, member_type=7)  # type: ignore[arg-type]
    await expect_code(api.call(logic.UpdateGroupMember, role, admin), Code.BAD_REQUEST)
    not_member = lx.UpdateGroupMemberReq(group_id=group_id, user_id=other.user_id, member_type=lx.GMT_ADMIN)
    await expect_code(api.call(logic.UpdateGroupMember, not_member, admin), Code.NOT_IN_GROUP)
    await expect_code(
        api.call(logic.DeleteGroupMember, lx.DeleteGroupMemberReq(group_id=group_id, user_id=other.user_id), admin),
        Code.NOT_IN_GROUP,
    )
    group = (await api.call(logic.GetGroup, lx.GetGroupReq(group_id=group_id), admin)).group
    assert (group.name, group.user_mum) == ("g", 1), "no refused call changed the group"
    assert list(await members_of(cluster, group_id, admin)) == [admin.user_id]
