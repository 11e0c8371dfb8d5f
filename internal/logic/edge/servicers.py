"""gRPC servicers of logic: LogicExt (apps, business backends) and LogicInt (connect,
business). An edge: requests become domain values (edge/pb_values.py), the domain's
answers become responses; nothing below these imports protobuf."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from grpc import aio

from gim.internal.logic.devices import DeviceStore
from gim.internal.logic.edge import pb_values
from gim.internal.logic.edge.business_client import UserClient
from gim.internal.logic.edge.message_encoding import sync_page, sync_pages
from gim.internal.logic.edge.previous_connections import PreviousConnections
from gim.internal.logic.friends import FriendService
from gim.internal.logic.groups import GroupService
from gim.internal.logic.limits import LogicLimits
from gim.internal.logic.rooms import RoomService
from gim.internal.logic.sending import MessageSending
from gim.internal.logic.sync import MessageSync
from gim.internal.logic.values import BUSINESS, Author, ReceiverType, SenderType
from gim.pkg import log, rpc
from gim.pkg.batcher import Batcher
from gim.pkg.errors import GimError, bad_request, result_pb, unauthorized, unavailable
from gim.pkg.pb import logic_ext_pb2 as ext
from gim.pkg.pb import logic_ext_pb2_grpc as ext_grpc
from gim.pkg.pb import logic_int_pb2 as int_
from gim.pkg.pb import logic_int_pb2_grpc as int_grpc

Context = aio.ServicerContext[Any, Any]
SignedIn = tuple[GimError | None, int | None]  # a sign-in: why it failed, or the user's highest seq (None: unknown)

MAX_SIGN_INS = 1000  # sign-ins in one ConnSignIns call, at most (and in one merged batch of calls)
# Merged batches of sign-in calls being handled at once. One: calls that come meanwhile
# wait and go together, so six connect nodes signing in a crowd cost business and the
# database fewer, larger batches (16,000 over six nodes: 1.12 x the rate of two at once,
# logic's CPU a sign-in 0.68 x, business's 0.57 x).
SIGN_IN_BATCHES = 1
# Under load, a merged batch of sign-ins starts this long after the previous one at the
# soonest (unless MAX_SIGN_INS wait): each batch costs an AuthMany, a device transaction
# and a seq read whatever its size, and each connect node sends its next call only once
# its last is answered, so without a pause every batch took the one or two calls that
# had come meanwhile (16,000 over six nodes: 1.47 x the rate, logic's CPU a sign-in
# 0.37 x). A node's calls wait even when they come one after another (`space_lone`):
# they carry whatever gathered meanwhile. A sign-in after a quiet spell goes at once.
SIGN_IN_SPACING = 0.05
MAX_ACKS = 1000  # acks in one MessageACKs call, at most
MAX_OFFLINES = 1000  # connections in one Offlines call, at most
_log = log.get("logic")


class LogicExtServicer(ext_grpc.LogicExtServicer):
    """For apps and business backends; everything but RegisterDevice needs a token."""

    def __init__(
        self,
        devices: DeviceStore,
        sending: MessageSending,
        users: UserClient,
        rooms: RoomService,
        friends: FriendService,
        groups: GroupService,
        limits: LogicLimits | None = None,
    ) -> None:
        self.devices = devices
        self.sending = sending
        self.users = users
        self.rooms = rooms
        self.friends = friends
        self.groups = groups
        self.limits = limits  # rate limits per caller (None: none)

    async def _caller(self, context: Context) -> tuple[Author, int]:
        user_id, device_id, token, request_id = rpc.identity_of(context)
        await self.users.auth(user_id, device_id, token, cached=True)
        return Author(SenderType.USER, user_id, device_id), request_id

    async def RegisterDevice(self, request: ext.RegisterDeviceReq, context: Context) -> ext.RegisterDeviceResp:
        if self.limits is not None:
            await self.limits.register_device(context.peer() or "")
        device_id = await self.devices.register(
            request.type,
            brand=request.brand,
            model=request.model,
            system_version=request.system_version,
            sdk_version=request.sdk_version,
        )
        _log.info("device_registered", device_id=device_id, type=request.type)
        return ext.RegisterDeviceResp(device_id=device_id)

    async def SendMessage(self, request: ext.SendMessageReq, context: Context) -> ext.SendMessageResp:
        sender, request_id = await self._caller(context)
        if self.limits is not None:  # a message to a room is a room push
            is_room = int(request.receiver_type) == ReceiverType.ROOM
            await (self.limits.room_push if is_room else self.limits.send)(sender.sender_id)
        seq = await self.sending.send(sender, pb_values.outgoing(request), request_id)
        return ext.SendMessageResp(seq=seq)

    async def PushRoom(self, request: ext.PushRoomReq, context: Context) -> ext.PushRoomResp:
        sender, _ = await self._caller(context)
        if self.limits is not None:
            await self.limits.room_push(sender.sender_id)
        await self.rooms.push(sender, pb_values.room_outgoing(request))
        return ext.PushRoomResp()

    # -- friends ---------------------------------------------------------------------

    async def AddFriend(self, request: ext.AddFriendReq, context: Context) -> ext.AddFriendResp:
        caller, _ = await self._caller(context)
        if self.limits is not None:
            await self.limits.add_friend(caller.sender_id)
        await self.friends.add(caller.sender_id, request.friend_id, request.remarks, request.description)
        return ext.AddFriendResp()

    async def AgreeAddFriend(self, request: ext.AgreeAddFriendReq, context: Context) -> ext.AgreeAddFriendResp:
        caller, _ = await self._caller(context)
        await self.friends.agree(caller.sender_id, request.user_id, request.remarks)
        return ext.AgreeAddFriendResp()

    async def SetFriend(self, request: ext.SetFriendReq, context: Context) -> ext.SetFriendResp:
        caller, _ = await self._caller(context)
        await self.friends.set(caller.sender_id, request.friend_id, request.remarks, request.extra)
        return ext.SetFriendResp(friend_id=request.friend_id, remarks=request.remarks, extra=request.extra)

    async def GetFriends(self, request: ext.GetFriendsReq, context: Context) -> ext.GetFriendsResp:
        caller, _ = await self._caller(context)
        friends = await self.friends.list(caller.sender_id)
        return ext.GetFriendsResp(friends=[pb_values.friend_pb(f) for f in friends])

    # -- groups ----------------------------------------------------------------------

    async def CreateGroup(self, request: ext.CreateGroupReq, context: Context) -> ext.CreateGroupResp:
        caller, _ = await self._caller(context)
        if self.limits is not None:
            await self.limits.create_group(caller.sender_id)
        profile = pb_values.group_profile(request)
        return ext.CreateGroupResp(
            group_id=await self.groups.create(caller.sender_id, profile, list(request.member_ids))
        )

    async def UpdateGroup(self, request: ext.UpdateGroupReq, context: Context) -> ext.UpdateGroupResp:
        caller, _ = await self._caller(context)
        await self.groups.update(caller.sender_id, request.group_id, pb_values.group_profile(request))
        return ext.UpdateGroupResp()

    async def GetGroup(self, request: ext.GetGroupReq, context: Context) -> ext.GetGroupResp:
        await self._caller(context)
        return ext.GetGroupResp(group=pb_values.group_pb(await self.groups.get(request.group_id)))

    async def GetGroups(self, request: ext.GetGroupsReq, context: Context) -> ext.GetGroupsResp:
        caller, _ = await self._caller(context)
        return ext.GetGroupsResp(groups=[pb_values.group_pb(g) for g in await self.groups.of_user(caller.sender_id)])

    async def AddGroupMembers(self, request: ext.AddGroupMembersReq, context: Context) -> ext.AddGroupMembersResp:
        caller, _ = await self._caller(context)
        existing = await self.groups.add_members(caller.sender_id, request.group_id, list(request.user_ids))
        return ext.AddGroupMembersResp(user_ids=existing)

    async def UpdateGroupMember(self, request: ext.UpdateGroupMemberReq, context: Context) -> ext.UpdateGroupMemberResp:
        caller, _ = await self._caller(context)
        await self.groups.update_member(caller.sender_id, request.group_id, pb_values.member(request))
        return ext.UpdateGroupMemberResp()

    async def DeleteGroupMember(self, request: ext.DeleteGroupMemberReq, context: Context) -> ext.DeleteGroupMemberResp:
        caller, _ = await self._caller(context)
        await self.groups.delete_member(caller.sender_id, request.group_id, request.user_id)
        return ext.DeleteGroupMemberResp()

    async def GetGroupMembers(self, request: ext.GetGroupMembersReq, context: Context) -> ext.GetGroupMembersResp:
        caller, _ = await self._caller(context)
        members = await self.groups.member_list(caller.sender_id, request.group_id)
        return ext.GetGroupMembersResp(members=[pb_values.member_pb(m) for m in members])


def _malformed(req: int_.ConnSignInReq) -> GimError | None:
    if req.user_id <= 0 or req.device_id <= 0 or not req.token:
        return unauthorized("user_id, device_id and token are required")
    if not req.conn_addr:
        return bad_request("conn_addr is required")
    return None


class LogicIntServicer(int_grpc.LogicIntServicer):
    """For connect nodes and the business service, on the private network."""

    def __init__(
        self,
        devices: DeviceStore,
        sending: MessageSending,
        sync: MessageSync,
        users: UserClient,
        rooms: RoomService,
        previous: PreviousConnections,
    ) -> None:
        self.devices = devices
        self.sending = sending
        self.sync = sync
        self.users = users
        self.rooms = rooms
        self.previous = previous
        # Sign-in calls that come while others are being handled (each connect node sends
        # its own, a crowd signs in on every node at once) go together: one AuthMany to
        # business, one seq read and, through DeviceStore, one device transaction for all.
        self._sign_ins: Batcher[list[int_.ConnSignInReq], list[SignedIn]] = Batcher(
            "conn_sign_ins",
            self._sign_in_calls,
            MAX_SIGN_INS,
            SIGN_IN_BATCHES,
            size=len,
            spacing=SIGN_IN_SPACING,
            space_lone=True,
        )

    async def ConnSignIn(self, request: int_.ConnSignInReq, context: Context) -> int_.ConnSignInResp:
        ((error, highest),) = await self._sign_ins.submit([request])
        if error is not None:
            raise error
        return int_.ConnSignInResp() if highest is None else int_.ConnSignInResp(max_seq=highest)

    async def ConnSignIns(self, request: int_.ConnSignInsReq, context: Context) -> int_.ConnSignInsResp:
        if len(request.sign_ins) > MAX_SIGN_INS:
            raise bad_request(f"at most {MAX_SIGN_INS} sign-ins in one call")
        results = []
        for error, highest in await self._sign_ins.submit(list(request.sign_ins)):
            result = result_pb(int_.SignInResult, error)
            if error is None and highest is not None:
                result.max_seq = highest
            results.append(result)
        return int_.ConnSignInsResp(results=results)

    async def _sign_in_calls(self, calls: list[list[int_.ConnSignInReq]]) -> list[list[SignedIn] | BaseException]:
        """The sign-ins of several calls, all together; each call's answers in its order:
        why it failed, or the user's highest seq (read once the device is online)."""
        reqs = [r for call in calls for r in call]
        errors = await self._sign_in(reqs)
        highest = await self._max_seqs([r for r, e in zip(reqs, errors, strict=True) if e is None])
        answers = [(e, None if e is not None else highest.get(r.user_id)) for r, e in zip(reqs, errors, strict=True)]
        ends = list(itertools.accumulate(len(call) for call in calls))
        return [answers[end - len(call) : end] for call, end in zip(calls, ends, strict=True)]

    async def _max_seqs(self, signed_in: list[int_.ConnSignInReq]) -> dict[int, int]:
        """The users' highest seqs, where connect starts ordering the devices' pushes; none
        if the database cannot say now (the sign-in stands, its pushes go unordered)."""
        if not signed_in:
            return {}
        try:
            return await self.sync.max_seqs([r.user_id for r in signed_in])
        except Exception as exc:
            _log.warning("max_seqs_failed", users=len(signed_in), error=repr(exc))
            return {}

    async def _sign_in(self, reqs: list[int_.ConnSignInReq]) -> list[GimError | None]:
        """Check each token with business, then mark each device online at its node (only
        for its owner): None for a sign-in that succeeded, else why it failed (the others
        go on). A device that moved from another node has its connection there closed."""
        results: list[GimError | None] = [_malformed(r) for r in reqs]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            authed = await self.users.auth_many([(reqs[i].user_id, reqs[i].device_id, reqs[i].token) for i in todo])
            for i, error in zip(todo, authed, strict=True):
                results[i] = error
        todo = [i for i, r in enumerate(results) if r is None]
        online = await asyncio.gather(
            *(
                self.devices.set_online(reqs[i].device_id, reqs[i].user_id, reqs[i].conn_addr, reqs[i].client_addr)
                for i in todo
            ),
            return_exceptions=True,
        )
        for i, outcome in zip(todo, online, strict=True):
            if isinstance(outcome, GimError):
                results[i] = outcome
            elif isinstance(outcome, BaseException):  # the database failed for this one: it may sign in again
                _log.error("sign_in_failed", device_id=reqs[i].device_id, error=repr(outcome))
                results[i] = unavailable("sign-in")
            else:
                r = reqs[i]
                _log.info("device_online", user_id=r.user_id, device_id=r.device_id, conn_addr=r.conn_addr, client_addr=r.client_addr,
                          moved_from=outcome.conn_addr if outcome else None)  # fmt: skip
                if outcome is not None:
                    self.previous.close(r.device_id, outcome)
        return results

    async def Sync(self, request: int_.SyncReq, context: Context) -> int_.SyncResp:
        if request.pages < 0:
            raise bad_request("pages must not be negative")
        chunk = await self.sync.sync(request.user_id, request.seq, exact=request.exact, pages=request.pages)
        if request.pages:  # connect reads ahead: the pages as its client will ask for them
            pages, last_seqs, has_more = sync_pages(request.user_id, chunk, self.sync.page_size)
            return int_.SyncResp(pages=pages, page_last_seqs=last_seqs, has_more=has_more)
        messages, has_more = sync_page(request.user_id, chunk)
        return int_.SyncResp(messages=messages, has_more=has_more)

    async def MessageACK(self, request: int_.MessageACKReq, context: Context) -> int_.MessageACKResp:
        await self.sync.ack(request.user_id, request.device_id, request.device_ack)
        return int_.MessageACKResp()

    async def MessageACKs(self, request: int_.MessageACKsReq, context: Context) -> int_.MessageACKsResp:
        if len(request.acks) > MAX_ACKS:
            raise bad_request(f"at most {MAX_ACKS} acks in one call")
        outcomes: list[BaseException | None]
        try:
            outcomes = [*await self.sync.ack_many([(a.user_id, a.device_id, a.device_ack) for a in request.acks])]
        except Exception as exc:  # each fails alike
            outcomes = [exc] * len(request.acks)
        return int_.MessageACKsResp(
            results=[_item_result("ack", a.device_id, o) for a, o in zip(request.acks, outcomes, strict=True)]
        )

    async def Offline(self, request: int_.OfflineReq, context: Context) -> int_.OfflineResp:
        changed = await self.devices.set_offline(request.device_id, request.user_id, request.client_addr)
        _log.info("device_offline", device_id=request.device_id, user_id=request.user_id, changed=changed)
        return int_.OfflineResp()

    async def Offlines(self, request: int_.OfflinesReq, context: Context) -> int_.OfflinesResp:
        if len(request.offlines) > MAX_OFFLINES:
            raise bad_request(f"at most {MAX_OFFLINES} offlines in one call")
        outcomes = await asyncio.gather(
            *(self.devices.set_offline(o.device_id, o.user_id, o.client_addr) for o in request.offlines),
            return_exceptions=True,
        )
        changed = sum(1 for o in outcomes if o is True)
        _log.info(
            "devices_offline",
            devices=len(outcomes),
            changed=changed,
            device_ids=[o.device_id for o in request.offlines][:20],
        )
        return int_.OfflinesResp(
            results=[_item_result("offline", o.device_id, r) for o, r in zip(request.offlines, outcomes, strict=True)]
        )

    async def SendMessage(self, request: ext.SendMessageReq, context: Context) -> ext.SendMessageResp:
        request_id = rpc.request_id_of(context)
        return ext.SendMessageResp(seq=await self.sending.send(BUSINESS, pb_values.outgoing(request), request_id))

    async def GetDevice(self, request: int_.GetDeviceReq, context: Context) -> int_.GetDeviceResp:
        return int_.GetDeviceResp(device=pb_values.device_pb(await self.devices.get(request.device_id)))

    async def ClaimDevice(self, request: int_.ClaimDeviceReq, context: Context) -> int_.ClaimDeviceResp:
        await self.devices.claim(request.device_id, request.user_id)
        _log.info("device_claimed", device_id=request.device_id, user_id=request.user_id)
        return int_.ClaimDeviceResp()

    async def ReleaseDevice(self, request: int_.ReleaseDeviceReq, context: Context) -> int_.ReleaseDeviceResp:
        released, connection = await self.devices.release(request.device_id, request.user_id)
        _log.info("device_released", device_id=request.device_id, user_id=request.user_id, released=released)
        if connection is not None:
            self.previous.close(request.device_id, connection)
        return int_.ReleaseDeviceResp(released=released)

    async def ServerStop(self, request: int_.ServerStopReq, context: Context) -> int_.ServerStopResp:
        count = await self.devices.node_stopped(request.conn_addr)
        _log.info("node_stopped", conn_addr=request.conn_addr, devices_offline=count)
        return int_.ServerStopResp()

    async def PushRoom(self, request: ext.PushRoomReq, context: Context) -> ext.PushRoomResp:
        await self.rooms.push(BUSINESS, pb_values.room_outgoing(request))
        return ext.PushRoomResp()

    async def PushAll(self, request: int_.PushAllReq, context: Context) -> int_.PushAllResp:
        await self.rooms.push_all(request.message_type, request.message_content, request.send_time)
        return int_.PushAllResp()

    async def SubscribeRoom(self, request: int_.SubscribeRoomReq, context: Context) -> int_.SubscribeRoomResp:
        await self.rooms.subscribe(request.user_id, request.device_id, request.room_id, request.seq, request.conn_addr)
        return int_.SubscribeRoomResp()


def _item_result(what: str, device_id: int, outcome: object) -> int_.AckResult:
    """One item's result in a batch call: done, refused (its gim code), or failed (the
    database: it may come again)."""
    if isinstance(outcome, GimError):
        return result_pb(int_.AckResult, outcome)
    if isinstance(outcome, BaseException):
        _log.error(f"{what}_failed", device_id=device_id, error=repr(outcome))
        return result_pb(int_.AckResult, unavailable(what))
    return int_.AckResult()
