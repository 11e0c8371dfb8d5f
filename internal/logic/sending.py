"""Sending (persist, then deliver), offline sync and acks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from google.protobuf.message import Message

from gim.internal.logic.acks import AckStore
from gim.internal.logic.delivery import Deliverer, SeqOrder, Target
from gim.internal.logic.devices import DeviceStore
from gim.internal.logic.group_store import GroupStore
from gim.internal.logic.message_store import DuplicateSend, MessageRow, MessageStore, StoredMessage
from gim.internal.logic.rooms import RoomService
from gim.internal.logic.users import UserClient
from gim.internal.logic.wire import (
    SYNC_BUDGET,
    check_fits,
    fit_for_sync,
    message_pb,
    message_send_bytes,
    now_ms,
    sender_pb,
    validate_content,
)
from gim.pkg import log
from gim.pkg.errors import Code, GimError, bad_request
from gim.pkg.nodes import NodeLiveness
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2, user_ext_pb2

_log = log.get("messages")

# Deliveries queued (all nodes) beyond which a send waits for its own pushes, for
# BACKLOG_PAUSE seconds at most.
DELIVERY_BACKLOG = 20_000
BACKLOG_PAUSE = 1.0


@dataclasses.dataclass(frozen=True)
class Sender:
    sender_type: int  # cx.SenderType
    sender_id: int
    device_id: int = 0  # the sending device, which is not delivered to


class MessageService:
    def __init__(
        self,
        store: MessageStore,
        devices: DeviceStore,
        groups: GroupStore,
        rooms: RoomService,
        nodes: NodeLiveness,
        users: UserClient,
        acks: AckStore,
        deliverer: Deliverer,
        max_content_bytes: int,
        sync_page_size: int,
    ) -> None:
        self.store = store
        self.devices = devices
        self.groups = groups
        self.rooms = rooms
        self.nodes = nodes
        self._order = SeqOrder()
        self.users = users
        self.acks = acks
        self.deliverer = deliverer
        self.max_content_bytes = max_content_bytes
        self.sync_page_size = sync_page_size
        self._failures = log.Summary(_log)

    def _validate(self, req: logic_ext_pb2.SendMessageReq) -> None:
        if req.receiver_type not in (cx.RT_USER, cx.RT_GROUP, cx.RT_ROOM):
            raise bad_request(f"unknown receiver_type {req.receiver_type}")
        if req.receiver_id <= 0:
            raise bad_request("receiver_id must be positive")
        validate_content(req.message_type, req.message_content, self.max_content_bytes)
        # to_user_ids count too: the stored message must fit one frame when pushed or synced
        if len(req.message_content) + 10 * len(req.to_user_ids) > self.max_content_bytes:
            raise bad_request(f"message_content and to_user_ids are larger than {self.max_content_bytes} bytes")

    async def send(
        self, sender: Sender, req: logic_ext_pb2.SendMessageReq, request_id: int, deadline: float | None = None
    ) -> int:
        """Send to the receiver; returns the sender's seq (0 when not persisted).

        The message is stored for every recipient in one transaction, or for none (the
        call then fails and may be retried). Delivery to online devices comes after and
        is best effort: a device that misses its push gets the message by sync.
        `deadline` (event loop time): not stored if its batch starts after it.
        """
        self._validate(req)
        if req.receiver_type == cx.RT_ROOM:  # read diffusion: not stored per user; the room's seq
            return await self.rooms.push(
                sender.sender_type,
                sender.sender_id,
                req.receiver_id,
                req.message_type,
                req.message_content,
                req.send_time,
                req.is_persist,
            )
        recipients, users = await self._recipients(sender, req)
        row = MessageRow(
            request_id=request_id,
            sender_type=sender.sender_type,
            sender_id=sender.sender_id,
            receiver_type=req.receiver_type,
            receiver_id=req.receiver_id,
            to_user_ids=list(req.to_user_ids),
            message_type=req.message_type,
            content=req.message_content,
            send_time=req.send_time or now_ms(),
        )
        return await self.dispatch(sender, row, recipients, req.is_persist, users, deadline=deadline)

    async def _recipients(
        self, sender: Sender, req: logic_ext_pb2.SendMessageReq
    ) -> tuple[list[int], dict[int, user_ext_pb2.User]]:
        """The users the message is stored for and delivered to (and those looked up)."""
        if req.receiver_type == cx.RT_USER:
            by_user = sender.sender_type == cx.ST_USER
            users = await self.users.get_many([req.receiver_id, sender.sender_id] if by_user else [req.receiver_id])
            if req.receiver_id not in users:
                raise GimError(Code.USER_NOT_FOUND, f"user {req.receiver_id} not found")
            if by_user and sender.sender_id != req.receiver_id:
                return [req.receiver_id, sender.sender_id], users
            return [req.receiver_id], users
        if req.receiver_type == cx.RT_GROUP:
            members = [m.user_id for m in await self.groups.existing_members(req.receiver_id)]
            if sender.sender_type == cx.ST_USER and sender.sender_id not in members:
                raise GimError(Code.NOT_IN_GROUP, f"user {sender.sender_id} is not in group {req.receiver_id}")
            return members, {}
        raise AssertionError(f"receiver_type {req.receiver_type} was validated")

    async def push_command(
        self, receiver_type: int, receiver_id: int, user_ids: list[int], code: int, data: Message
    ) -> None:
        """A server event (docs/protocol.md section 3.7) stored for and delivered to `user_ids`."""
        await self.push_event(command_row(receiver_type, receiver_id, code, data), user_ids)

    async def push_event(self, row: MessageRow, user_ids: list[int]) -> None:
        """A server event (`command_row`) of a change already committed, stored for and
        delivered to `user_ids` whatever the store's queue and the caller."""
        await self.dispatch(Sender(cx.ST_SYSTEM, 0), row, user_ids, persist=True, follows_commit=True)

    async def dispatch(
        self,
        sender: Sender,
        row: MessageRow,
        recipients: list[int],
        persist: bool,
        users: dict[int, user_ext_pb2.User] | None = None,
        *,
        deadline: float | None = None,
        follows_commit: bool = False,
    ) -> int:
        """Store (if `persist`) for every recipient, then deliver; the sender's own seq.
        `users`: user info already at hand (the sender's is pushed with the message);
        `deadline`, `follows_commit`: see `MessageStore.store`. 10001 (nothing stored) for
        a message that could not reach a device in one frame."""
        check_fits(row)
        job = self._order.start(recipients)
        delivered: asyncio.Future[int] | None = None
        try:
            try:
                if persist:
                    seqs = await self.store.store(row, recipients, deadline=deadline, follows_commit=follows_commit)
                else:
                    seqs = dict.fromkeys(recipients, 0)
            except DuplicateSend as retry:  # delivered (or synced) the first time
                _log.info("send_retry_recognised", sender_id=sender.sender_id, request_id=row.request_id, seq=retry.seq)
                return retry.seq
            own_seq = seqs.get(sender.sender_id, 0) if sender.sender_type == cx.ST_USER else 0
            # Stored: from here on nothing may fail the send, or a retry would store it
            # twice; each step below fails alone (logged) and the others still happen.
            if own_seq and sender.device_id:
                await self._ack_own(sender, own_seq)
            targets, suspects = await self._targets(sender, row, seqs, users or {}, own_seq)
            await self._order.turn(job, seqs)
            if targets:  # queued in seq order; the next send may queue behind while these travel
                delivered = await self.deliverer.start(targets, suspects)
        finally:
            self._order.finish(job)
        if delivered is not None and self.deliverer.backlog > DELIVERY_BACKLOG:
            # The answer does not wait for the pushes (connect puts a device's pushes in
            # seq order, whichever logic node they come from), unless too many are queued:
            # then the senders slow down to the pace of delivery, for a moment at most.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(delivered), BACKLOG_PAUSE)
        _log.debug("message_sent", sender_id=sender.sender_id, receiver_id=row.receiver_id, recipients=len(seqs))
        return own_seq

    async def _ack_own(self, sender: Sender, own_seq: int) -> None:
        """The sending device has its own message: its ack moves past it."""
        try:
            await self.acks.ack(sender.sender_id, sender.device_id, own_seq)
        except Exception as exc:
            self._failures.warning("own_ack_failed", kind=type(exc).__name__, error=str(exc))

    async def _targets(
        self, sender: Sender, row: MessageRow, seqs: dict[int, int], users: dict[int, user_ext_pb2.User], own_seq: int
    ) -> tuple[list[Target], set[str]]:
        """What to push to which online device, and the nodes that show no sign of life.
        The sending device gets no push, but the mark of its own seq (`own_seq`), so that
        connect keeps its push order. If the routes cannot be looked up, nothing is pushed
        (logged): the message is stored, and connect or the client finds it by sync."""
        try:
            online = await self.devices.online(list(seqs))
            if not online:
                return [], set()
            suspects = await self.nodes.suspects({d.conn_addr for d in online})
            if sender.sender_id not in users:
                users = await self._users_of([(sender.sender_type, sender.sender_id)])
        except Exception as exc:
            self._failures.warning("push_routes_failed", kind=type(exc).__name__, error=str(exc), recipients=len(seqs))
            return [], set()
        from_ = sender_pb(sender.sender_type, sender.sender_id, users)
        without_seq = message_pb(StoredMessage(0, 0, row), from_).SerializeToString()
        sends = {user_id: message_send_bytes(without_seq, seqs[user_id]) for user_id in {d.user_id for d in online}}
        targets: list[Target] = []
        for device in online:
            if device.device_id != sender.device_id:
                targets.append((device, sends[device.user_id]))
            elif own_seq:
                targets.append((device, own_seq))
        return targets, suspects

    async def _users_of(self, senders: list[tuple[int, int]]) -> dict[int, user_ext_pb2.User]:
        """Current user info of the senders that are users (nickname, avatar, extra)."""
        return await self.users.get_many([i for t, i in senders if t == cx.ST_USER])

    async def sync(self, user_id: int, device_id: int, seq: int) -> tuple[list[cx.Message], bool]:
        """Stored messages after `seq` (0: after the highest ack of any device), one page."""
        if seq < 0:
            raise bad_request("seq must not be negative")
        if seq == 0:
            seq = await self.acks.highest(user_id)
        page = await self.store.after(user_id, seq, self.sync_page_size + 1)
        has_more = len(page) > self.sync_page_size
        page = page[: self.sync_page_size]
        users = await self._users_of([(m.row.sender_type, m.row.sender_id) for m in page])
        messages: list[cx.Message] = []
        size = 2  # the has_more field
        for stored in page:
            message = message_pb(stored, sender_pb(stored.row.sender_type, stored.row.sender_id, users))
            if (fitted := fit_for_sync(message)) is not message:  # stored before sizes were checked
                _log.warning("sync_message_too_large", user_id=user_id, seq=stored.seq, size=message.ByteSize())
                message = fitted
            cost = message.ByteSize() + 4  # field tag + length prefix
            if messages and size + cost > SYNC_BUDGET:
                has_more = True
                break
            messages.append(message)
            size += cost
        return messages, has_more

    async def ack(self, user_id: int, device_id: int, seq: int) -> None:
        if seq < 0:
            raise bad_request("device_ack must not be negative")
        await self.acks.ack(user_id, device_id, seq)


def command_row(receiver_type: int, receiver_id: int, code: int, data: Message) -> MessageRow:
    """A server event (sender ST_SYSTEM, MT_COMMAND, content Command{code, data}); 10001
    if it could not reach a device in one frame (`check_fits`)."""
    row = MessageRow(
        request_id=0,
        sender_type=cx.ST_SYSTEM,
        sender_id=0,
        receiver_type=receiver_type,
        receiver_id=receiver_id,
        to_user_ids=[],
        message_type=cx.MT_COMMAND,
        content=cx.Command(code=code, data=data.SerializeToString()).SerializeToString(),
        send_time=now_ms(),
    )
    check_fits(row)
    return row
