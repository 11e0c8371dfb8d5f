"""Per-user seq allocation under concurrency: no duplicate, no gap, on MySQL and SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import defaultdict
from typing import TYPE_CHECKING

from gim.internal.logic.message_store import MessageStore
from gim.internal.logic.values import MessageRow
from gim.pkg.schema import MessageShards

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


SHARDS = 4


def row(sender: int, receiver: int) -> MessageRow:
    return MessageRow(
        request_id=0,
        sender_type=2,
        sender_id=sender,
        receiver_type=1,
        receiver_id=receiver,
        to_user_ids=[],
        message_type=1,
        content=b"\x0a\x01x",
        send_time=1,
    )


async def test_concurrent_senders_get_gapless_unique_seqs(engine: AsyncEngine) -> None:
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**9, 10**12)
    users = [base + i for i in range(8)]
    rng = random.Random(7)
    sends = []
    for _ in range(200):
        sender, receiver = rng.sample(users, 2)
        sends.append((sender, receiver))

    async def one(sender: int, receiver: int) -> dict[int, int]:
        return await store.store(row(sender, receiver), [sender, receiver])

    # 50 at a time, as from 50 concurrent senders
    results: list[dict[int, int]] = []
    for start in range(0, len(sends), 50):
        results += await asyncio.gather(*(one(s, r) for s, r in sends[start : start + 50]))

    per_user: dict[int, list[int]] = defaultdict(list)
    for seqs in results:
        for user_id, seq in seqs.items():
            per_user[user_id].append(seq)
    for user_id in users:
        seqs = sorted(per_user[user_id])
        assert seqs == list(range(1, len(seqs) + 1)), f"user {user_id}: duplicate or gap"
        stored = await store.after(user_id, 0, 1000)
        assert [m.seq for m in stored] == seqs, "every allocated seq has its stored row"
        assert await store.max_seq(user_id) == len(seqs)


async def test_group_sized_store_allocates_one_seq_per_member(engine: AsyncEngine) -> None:
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**12, 10**13)
    members = [base + i for i in range(200)]
    first = await store.store(row(members[0], 1), members)
    second, third = await asyncio.gather(
        store.store(row(members[1], 1), members), store.store(row(members[2], 1), list(reversed(members)))
    )
    assert first == dict.fromkeys(members, 1)
    for member in members:
        assert sorted([second[member], third[member]]) == [2, 3]
    # what a batch of sign-ins asks: several users at once, one twice, one without messages
    highest = await store.max_seqs([*members[:3], members[0], base - 1])
    assert highest == {members[0]: 3, members[1]: 3, members[2]: 3, base - 1: 0}
    assert await store.max_seqs([]) == {}


async def test_a_send_the_database_refuses_fails_alone(engine: AsyncEngine) -> None:
    """Sends stored together in one batch: one the database refuses does not take the
    others down, and leaves no gap in anybody's seqs."""
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**9, 10**12)
    good = [store.store(row(base + i, base + 100), [base + i, base + 100]) for i in range(10)]
    refused = dataclasses.replace(row(base + 50, base + 100), content=None)  # type: ignore[arg-type]  # NOT NULL
    results = await asyncio.gather(*good, store.store(refused, [base + 50, base + 100]), return_exceptions=True)
    assert isinstance(results[-1], Exception), results[-1]
    seqs = [r[base + 100] for r in results[:-1]]  # type: ignore[index]
    assert sorted(seqs) == list(range(1, 11)), "the receiver's seqs stay gapless"
    assert await store.max_seq(base + 50) == 0, "the refused send allocated nothing"
