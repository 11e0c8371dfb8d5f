"""Offline sync and acks: a device fetches what was stored for its user after the highest
seq it has, page by page, and acknowledges what it got."""

from __future__ import annotations

from gim.internal.logic.acks import Ack, AckStore
from gim.internal.logic.message_store import MessageStore
from gim.internal.logic.ports import Profiles
from gim.internal.logic.values import SenderType, SyncPage
from gim.pkg import metrics
from gim.pkg.errors import GimError, bad_request

MAX_PAGES = 20  # pages read ahead in one Sync, at most


class MessageSync:
    def __init__(self, store: MessageStore, acks: AckStore, profiles: Profiles, page_size: int) -> None:
        self._store = store
        self.acks = acks
        self._profiles = profiles
        self.page_size = page_size

    async def sync(self, user_id: int, seq: int, exact: bool = False, pages: int = 1) -> SyncPage:
        """Stored messages after `seq` (0: after the highest ack of any of the user's
        devices, unless `exact`), `pages` pages of them at most (read ahead by connect, one
        query), with their user senders' current profiles."""
        if seq < 0:
            raise bad_request("seq must not be negative")
        if seq == 0 and not exact:
            seq = await self.acks.highest(user_id)
        limit = self.page_size * max(1, min(pages, MAX_PAGES))
        page = await self._store.after(user_id, seq, limit + 1)
        has_more = len(page) > limit
        metrics.LOGIC_SYNC_PAGES.labels("true" if has_more else "false").inc()
        page = page[:limit]
        senders = {m.row.sender_id for m in page if m.row.sender_type == SenderType.USER}
        return SyncPage(page, await self._profiles.get_many(sorted(senders)), has_more)

    async def ack(self, user_id: int, device_id: int, seq: int) -> None:
        (refused,) = await self.ack_many([(user_id, device_id, seq)])
        if refused is not None:
            raise refused

    async def ack_many(self, acks: list[Ack]) -> list[GimError | None]:
        """Each (user, device, seq) acknowledged, all together; a negative seq is refused
        (its GimError in its place), the rest are raised."""
        refused = [bad_request("device_ack must not be negative") if seq < 0 else None for _, _, seq in acks]
        if valid := [ack for ack, error in zip(acks, refused, strict=True) if error is None]:
            await self.acks.ack_many(valid)
        return refused

    async def max_seqs(self, user_ids: list[int]) -> dict[int, int]:
        """Each user's highest seq (committed): where connect starts a device's push order."""
        return await self._store.max_seqs(user_ids)
