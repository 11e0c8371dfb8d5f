"""Sending: a message checked, its recipients found, stored for each of them (or for none),
then handed to the fan-out; the sender's seq is the answer."""

from __future__ import annotations

from gim.internal.logic.acks import AckStore
from gim.internal.logic.checks import validate_content
from gim.internal.logic.fanout import FanOut
from gim.internal.logic.group_store import GroupStore
from gim.internal.logic.message_store import DuplicateSend, MessageStore
from gim.internal.logic.ports import MessageFormat, Profiles
from gim.internal.logic.rooms import RoomService
from gim.internal.logic.values import Author, MessageRow, Outgoing, ReceiverType, SenderType, User, now_ms
from gim.pkg import log, metrics
from gim.pkg.errors import Code, GimError, bad_request, not_in_group

_log = log.get("sending")


class MessageSending:
    def __init__(
        self,
        store: MessageStore,
        fanout: FanOut,
        acks: AckStore,
        profiles: Profiles,
        groups: GroupStore,
        rooms: RoomService,
        format: MessageFormat,
        max_content_bytes: int,
    ) -> None:
        self.store = store
        self.fanout = fanout
        self.acks = acks
        self._profiles = profiles
        self._groups = groups
        self._rooms = rooms
        self._format = format
        self.max_content_bytes = max_content_bytes
        self._failures = log.Summary(_log)

    def _validate(self, message: Outgoing) -> None:
        if message.receiver_type not in (ReceiverType.USER, ReceiverType.GROUP, ReceiverType.ROOM):
            raise bad_request(f"unknown receiver_type {message.receiver_type}")
        if message.receiver_id <= 0:
            raise bad_request("receiver_id must be positive")
        validate_content(message.message_type, message.content, self.max_content_bytes)
        # to_user_ids count too: the stored message must fit one frame when pushed or synced
        if len(message.content) + 10 * len(message.to_user_ids) > self.max_content_bytes:
            raise bad_request(f"message_content and to_user_ids are larger than {self.max_content_bytes} bytes")

    async def send(self, author: Author, message: Outgoing, request_id: int, deadline: float | None = None) -> int:
        """Send to the receiver; returns the author's seq (0 when not persisted).

        The message is stored for every recipient in one transaction, or for none (the
        call then fails and may be retried). Delivery to online devices comes after and
        is best effort: a device that misses its push gets the message by sync.
        `deadline` (event loop time): not stored if its batch starts after it.
        """
        self._validate(message)
        metrics.LOGIC_SENDS.labels(ReceiverType(message.receiver_type).name.lower()).inc()
        if message.receiver_type == ReceiverType.ROOM:  # read diffusion: not stored per user; the room's seq
            return await self._rooms.push(author, message)
        recipients, profiles = await self._recipients(author, message)
        row = MessageRow(
            request_id=request_id,
            sender_type=author.sender_type,
            sender_id=author.sender_id,
            receiver_type=message.receiver_type,
            receiver_id=message.receiver_id,
            to_user_ids=list(message.to_user_ids),
            message_type=message.message_type,
            content=message.content,
            send_time=message.send_time or now_ms(),
        )
        return await self.store_and_push(author, row, recipients, message.is_persist, profiles, deadline=deadline)

    async def _recipients(self, author: Author, message: Outgoing) -> tuple[list[int], dict[int, User]]:
        """The users the message is stored for and pushed to (and the profiles looked up)."""
        if message.receiver_type == ReceiverType.USER:
            by_user = author.sender_type == SenderType.USER
            looked_up = [message.receiver_id, author.sender_id] if by_user else [message.receiver_id]
            profiles = await self._profiles.get_many(looked_up)
            if message.receiver_id not in profiles:
                raise GimError(Code.USER_NOT_FOUND, f"user {message.receiver_id} not found")
            if by_user and author.sender_id != message.receiver_id:
                return [message.receiver_id, author.sender_id], profiles
            return [message.receiver_id], profiles
        if message.receiver_type == ReceiverType.GROUP:
            members = [m.user_id for m in await self._groups.existing_members(message.receiver_id)]
            if author.sender_type == SenderType.USER and author.sender_id not in members:
                raise not_in_group(author.sender_id, message.receiver_id)
            return members, {}
        raise AssertionError(f"receiver_type {message.receiver_type} was validated")

    async def store_and_push(
        self,
        author: Author,
        row: MessageRow,
        recipients: list[int],
        persist: bool,
        profiles: dict[int, User] | None = None,
        *,
        deadline: float | None = None,
        follows_commit: bool = False,
    ) -> int:
        """Store (if `persist`) for every recipient, then push; the author's own seq.
        `profiles`: user profiles already at hand; `deadline`, `follows_commit`: see
        `MessageStore.store`. 10001 (nothing stored) for a message that could not reach
        a device in one frame."""
        self._format.check_fits(row)
        async with self.fanout.ordered(recipients) as turn:
            try:
                if persist:
                    seqs = await self.store.store(row, recipients, deadline=deadline, follows_commit=follows_commit)
                else:
                    seqs = dict.fromkeys(recipients, 0)
            except DuplicateSend as retry:  # pushed (or synced) the first time
                _log.info("send_retry_recognised", sender_id=author.sender_id, request_id=row.request_id, seq=retry.seq)
                return retry.seq
            own_seq = seqs.get(author.sender_id, 0) if author.sender_type == SenderType.USER else 0
            # Stored: from here on nothing may fail the send, or a retry would store it
            # twice; each step below fails alone (logged) and the others still happen,
            # after the answer: the sending device's own ack, and the pushes (in seq order).
            also = [self._ack_own(author, own_seq)] if own_seq and author.device_id else []
            turn.push_soon(author, row, seqs, profiles or {}, *also)
        _log.debug("message_sent", sender_id=author.sender_id, receiver_id=row.receiver_id, recipients=len(seqs))
        return own_seq

    async def _ack_own(self, author: Author, own_seq: int) -> None:
        """The sending device has its own message: its ack moves past it."""
        try:
            await self.acks.ack(author.sender_id, author.device_id, own_seq)
        except Exception as exc:
            self._failures.warning("own_ack_failed", kind=type(exc).__name__, error=str(exc))
