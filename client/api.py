"""The gRPC side for apps: register a device, sign in, then call LogicExt / UserExt.

Every method of `LogicExt` and `UserExt` has a typed wrapper here. Those that need a
signed-in caller take its `Credentials` first and send them as the metadata
`user_id`, `device_id`, `token` (and `request_id` when given). A failure the server
names with a gim code is raised as `GimError` (`.code` is the `Code`); anything else
(the server unreachable, a deadline) stays a `grpc.aio.AioRpcError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, cast

from gim.pkg import rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import logic_ext_pb2_grpc, user_ext_pb2, user_ext_pb2_grpc
from gim.pkg.pb import user_ext_pb2 as ux
from gim.pkg.security import Outbound, client_credentials


@dataclasses.dataclass(frozen=True)
class Credentials:
    user_id: int
    device_id: int
    token: str

    def metadata(self, request_id: int = 0) -> list[tuple[str, str]]:
        md = [("user_id", str(self.user_id)), ("device_id", str(self.device_id)), ("token", self.token)]
        if request_id:
            md.append(("request_id", str(request_id)))
        return md


class GimApi:
    """LogicExt and UserExt stubs; errors come back as `GimError`. `tls`: the ports speak
    TLS; their certificates are checked against `ca_file` (the system's roots when None).
    `own_connections`: connections of its own, not shared with other GimApi objects in
    this process to the same addresses (as separate apps would have)."""

    def __init__(
        self,
        logic_addr: str,
        user_addr: str,
        timeout: float = 10.0,
        *,
        tls: bool = False,
        ca_file: str | None = None,
        own_connections: bool = False,
    ) -> None:
        how = Outbound(client_credentials(ca_file)) if tls else Outbound()  # never the process's internal secret
        self._channels = [rpc.channel(addr, outbound=how, private=own_connections) for addr in (logic_addr, user_addr)]
        self.logic = logic_ext_pb2_grpc.LogicExtStub(self._channels[0])
        self.users = user_ext_pb2_grpc.UserExtStub(self._channels[1])
        self.timeout = timeout

    async def call(self, method: Any, request: Any, creds: Credentials | None = None, request_id: int = 0) -> Any:
        md = creds.metadata(request_id) if creds else []
        return await rpc.call(method, request, self.timeout, md)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    # -- devices and users (no credentials needed) -------------------------------------

    async def register_device(
        self,
        type_: int = 1,
        brand: str = "gim",
        model: str = "client",
        system_version: str = "",
        sdk_version: str = "",
    ) -> int:
        req = lx.RegisterDeviceReq(
            type=type_, brand=brand, model=model, system_version=system_version, sdk_version=sdk_version
        )
        return int((await self.call(self.logic.RegisterDevice, req)).device_id)

    async def sign_in(self, phone_number: str, code: str, device_id: int) -> Credentials:
        req = user_ext_pb2.SignInReq(phone_number=phone_number, code=code, device_id=device_id)
        resp = await self.call(self.users.SignIn, req)
        return Credentials(resp.user_id, device_id, resp.token)

    async def sign_in_by_phone(self, phone_number: str, code: str, device_id: int | None = None) -> Credentials:
        """Sign in on `device_id`, or on a newly registered device when it is None."""
        if device_id is None:
            device_id = await self.register_device(type_=3, brand="gim", model="gim.client")
        return await self.sign_in(phone_number, code, device_id)

    # -- UserExt -------------------------------------------------------------------------

    async def get_user(self, creds: Credentials, user_id: int) -> ux.User:
        resp: ux.GetUserResp = await self.call(self.users.GetUser, ux.GetUserReq(user_id=user_id), creds)
        return resp.user

    async def update_user(
        self, creds: Credentials, nickname: str = "", sex: int = 0, avatar_url: str = "", extra: str = ""
    ) -> None:
        req = ux.UpdateUserReq(nickname=nickname, sex=sex, avatar_url=avatar_url, extra=extra)
        await self.call(self.users.UpdateUser, req, creds)

    async def search_user(self, creds: Credentials, key: str) -> list[ux.User]:
        return list((await self.call(self.users.SearchUser, ux.SearchUserReq(key=key), creds)).users)

    # -- messages ------------------------------------------------------------------------

    async def send_message(
        self,
        creds: Credentials,
        receiver_type: int,
        receiver_id: int,
        content: bytes,
        message_type: int = cx.MT_TEXT,
        persist: bool = True,
        request_id: int = 0,
        to_user_ids: Iterable[int] = (),
        send_time: int = 0,
    ) -> int:
        """Returns the sender's seq (0 when not persisted)."""
        req = lx.SendMessageReq(
            receiver_type=cast(cx.ReceiverType, receiver_type),
            receiver_id=receiver_id,
            to_user_ids=list(to_user_ids),
            message_type=cast(cx.MessageType, message_type),
            message_content=content,
            send_time=send_time,
            is_persist=persist,
        )
        return int((await self.call(self.logic.SendMessage, req, creds, request_id)).seq)

    async def push_room(
        self,
        creds: Credentials,
        room_id: int,
        content: bytes,
        message_type: int = cx.MT_TEXT,
        persist: bool = False,
        send_time: int = 0,
    ) -> None:
        req = lx.PushRoomReq(
            room_id=room_id,
            message_type=cast(cx.MessageType, message_type),
            message_content=content,
            send_time=send_time,
            is_persist=persist,
        )
        await self.call(self.logic.PushRoom, req, creds)

    # -- friends -------------------------------------------------------------------------

    async def add_friend(self, creds: Credentials, friend_id: int, remarks: str = "", description: str = "") -> None:
        req = lx.AddFriendReq(friend_id=friend_id, remarks=remarks, description=description)
        await self.call(self.logic.AddFriend, req, creds)

    async def agree_add_friend(self, creds: Credentials, user_id: int, remarks: str = "") -> None:
        await self.call(self.logic.AgreeAddFriend, lx.AgreeAddFriendReq(user_id=user_id, remarks=remarks), creds)

    async def set_friend(
        self, creds: Credentials, friend_id: int, remarks: str = "", extra: str = ""
    ) -> lx.SetFriendResp:
        req = lx.SetFriendReq(friend_id=friend_id, remarks=remarks, extra=extra)
        resp: lx.SetFriendResp = await self.call(self.logic.SetFriend, req, creds)
        return resp

    async def get_friends(self, creds: Credentials) -> list[lx.Friend]:
        return list((await self.call(self.logic.GetFriends, lx.GetFriendsReq(), creds)).friends)

    # -- groups --------------------------------------------------------------------------

    async def create_group(
        self,
        creds: Credentials,
        name: str,
        member_ids: Iterable[int] = (),
        avatar_url: str = "",
        introduction: str = "",
        extra: str = "",
    ) -> int:
        req = lx.CreateGroupReq(
            name=name, avatar_url=avatar_url, introduction=introduction, extra=extra, member_ids=list(member_ids)
        )
        return int((await self.call(self.logic.CreateGroup, req, creds)).group_id)

    async def update_group(
        self,
        creds: Credentials,
        group_id: int,
        name: str = "",
        avatar_url: str = "",
        introduction: str = "",
        extra: str = "",
    ) -> None:
        req = lx.UpdateGroupReq(
            group_id=group_id, name=name, avatar_url=avatar_url, introduction=introduction, extra=extra
        )
        await self.call(self.logic.UpdateGroup, req, creds)

    async def get_group(self, creds: Credentials, group_id: int) -> lx.Group:
        resp: lx.GetGroupResp = await self.call(self.logic.GetGroup, lx.GetGroupReq(group_id=group_id), creds)
        return resp.group

    async def get_groups(self, creds: Credentials) -> list[lx.Group]:
        return list((await self.call(self.logic.GetGroups, lx.GetGroupsReq(), creds)).groups)

    async def add_group_members(self, creds: Credentials, group_id: int, user_ids: Iterable[int]) -> list[int]:
        """Returns the ids that were already members."""
        req = lx.AddGroupMembersReq(group_id=group_id, user_ids=list(user_ids))
        return list((await self.call(self.logic.AddGroupMembers, req, creds)).user_ids)

    async def update_group_member(
        self,
        creds: Credentials,
        group_id: int,
        user_id: int,
        member_type: int = lx.GMT_MEMBER,
        remarks: str = "",
        extra: str = "",
    ) -> None:
        req = lx.UpdateGroupMemberReq(
            group_id=group_id,
            user_id=user_id,
            member_type=cast(lx.MemberType, member_type),
            remarks=remarks,
            extra=extra,
        )
        await self.call(self.logic.UpdateGroupMember, req, creds)

    async def delete_group_member(self, creds: Credentials, group_id: int, user_id: int) -> None:
        await self.call(
            self.logic.DeleteGroupMember, lx.DeleteGroupMemberReq(group_id=group_id, user_id=user_id), creds
        )

    async def get_group_members(self, creds: Credentials, group_id: int) -> list[lx.GroupMember]:
        req = lx.GetGroupMembersReq(group_id=group_id)
        return list((await self.call(self.logic.GetGroupMembers, req, creds)).members)
