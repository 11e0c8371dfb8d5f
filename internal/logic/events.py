"""Server events (docs/protocol.md section 3.7): friend and group changes told to the users
concerned as ordinary stored messages from ST_SYSTEM with MT_COMMAND content, so they get
seqs, arrive in real time and come back by sync. Their contents come from the
`EventFormat` port; here they are stored and pushed."""

from __future__ import annotations

import asyncio

from gim.internal.logic.ports import EventFormat, MessageFormat
from gim.internal.logic.sending import MessageSending
from gim.internal.logic.values import SYSTEM, MessageRow, MessageType, now_ms


class ServerEvents:
    def __init__(self, sending: MessageSending, contents: EventFormat, format: MessageFormat) -> None:
        self._sending = sending
        self.contents = contents  # what each event says
        self._format = format

    def row(self, receiver_type: int, receiver_id: int, content: bytes) -> MessageRow:
        """An event with this content; 10001 if it could not reach a device in one frame."""
        row = MessageRow(
            request_id=0,
            sender_type=SYSTEM.sender_type,
            sender_id=SYSTEM.sender_id,
            receiver_type=receiver_type,
            receiver_id=receiver_id,
            to_user_ids=[],
            message_type=MessageType.COMMAND,
            content=content,
            send_time=now_ms(),
        )
        self._format.check_fits(row)
        return row

    def admit(self, rows: int) -> None:
        """`Overloaded` (RESOURCE_EXHAUSTED) unless the message store can queue `rows` more
        message rows now: asked before a change commits whose events need them."""
        self._sending.store.admit(rows)

    async def push(self, receiver_type: int, receiver_id: int, user_ids: list[int], content: bytes) -> None:
        """An event of a change already committed, stored for and pushed to `user_ids`."""
        await self.push_rows([self.row(receiver_type, receiver_id, content)], user_ids)

    async def push_rows(self, rows: list[MessageRow], user_ids: list[int]) -> None:
        """Store and push the events of a committed change, in order, whatever the store's
        queue, and even if the caller leaves meanwhile (the change is done: its events
        must not be lost)."""

        async def push_all() -> None:
            for row in rows:
                await self._sending.store_and_push(SYSTEM, row, user_ids, persist=True, follows_commit=True)

        await asyncio.shield(push_all())
