"""The Redis caches: writes invalidate what they change, and a stale read never refills."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from gim.pkg.cache import GEN_TTL, INVALIDATE_CHUNK, Cache
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.pb import user_ext_pb2 as ux

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gimtest.backends import Storage
    from gimtest.cluster import Cluster


async def test_changed_nickname_shows_in_next_sync_and_member_list(cluster: Cluster) -> None:
    api = cluster.api
    (alice,) = await cluster.new_user(nickname="Alice")
    bob_phone, bob_laptop = await cluster.new_user(devices=2, nickname="Bob")
    group_id = (
        await api.call(api.logic.CreateGroup, lx.CreateGroupReq(name="g", member_ids=[bob_phone.user_id]), alice)
    ).group_id
    body = cx.Text(text="hi").SerializeToString()
    await api.send_message(alice, cx.RT_USER, bob_phone.user_id, body)
    conn = await cluster.online(bob_laptop)
    try:
        first = await cluster.sync_all(conn, 0)
        assert first[-1].sender.nickname == "Alice"  # the user cache now holds Alice
        members = await api.call(api.logic.GetGroupMembers, lx.GetGroupMembersReq(group_id=group_id), bob_phone)
        assert {m.nickname for m in members.members} == {"Alice", "Bob"}

        await api.call(api.users.UpdateUser, ux.UpdateUserReq(nickname="Alicia", avatar_url="a.png"), alice)

        again = await cluster.sync_all(conn, first[-1].seq - 1)
        assert (again[-1].sender.nickname, again[-1].sender.avatar_url) == ("Alicia", "a.png")
        members = await api.call(api.logic.GetGroupMembers, lx.GetGroupMembersReq(group_id=group_id), bob_phone)
        assert {m.nickname for m in members.members} == {"Alicia", "Bob"}
    finally:
        await conn.close()


async def test_member_changes_show_at_once(cluster: Cluster) -> None:
    api = cluster.api
    (owner,) = await cluster.new_user()
    (newcomer,) = await cluster.new_user()
    group_id = (await api.call(api.logic.CreateGroup, lx.CreateGroupReq(name="g"), owner)).group_id
    before = await api.call(api.logic.GetGroupMembers, lx.GetGroupMembersReq(group_id=group_id), owner)
    assert [m.user_id for m in before.members] == [owner.user_id]  # now cached
    await api.call(
        api.logic.AddGroupMembers, lx.AddGroupMembersReq(group_id=group_id, user_ids=[newcomer.user_id]), owner
    )
    # The newcomer may send at once: the cached member list was invalidated.
    assert await api.send_message(newcomer, cx.RT_GROUP, group_id, b"\n\x02hi") > 0
    group = (await api.call(api.logic.GetGroup, lx.GetGroupReq(group_id=group_id), owner)).group
    assert group.user_mum == 2


async def test_a_read_racing_a_write_does_not_refill_stale_data(redis: Redis, storage: Storage) -> None:
    cache = Cache(redis, f"{storage.redis_prefix}{uuid.uuid4().hex}:", ttl=60)  # dropped with the prefix
    loads: list[list[int]] = []

    async def stale_loader(ids: list[int]) -> dict[int, bytes]:
        loads.append(ids)
        await cache.invalidate("thing", ids)  # a writer commits while this reader is reading
        return {i: b"old" for i in ids}

    assert await cache.load("thing", [1], stale_loader) == {1: b"old"}

    async def fresh_loader(ids: list[int]) -> dict[int, bytes]:
        loads.append(ids)
        return {i: b"new" for i in ids}

    assert await cache.load("thing", [1], fresh_loader) == {1: b"new"}, "the stale value was not cached"
    assert await cache.load("thing", [1], fresh_loader) == {1: b"new"}
    assert loads == [[1], [1]], "the fresh value was cached: the third load read nothing"


async def test_an_invalidation_of_more_entries_than_one_call_takes_reaches_each(redis: Redis, storage: Storage) -> None:
    """Generations bumped (with their time to live) and values deleted, past one script
    call's chunk; other entries untouched."""
    prefix = f"{storage.redis_prefix}{uuid.uuid4().hex}:"
    cache = Cache(redis, prefix, ttl=60)
    ids = list(range(1, INVALIDATE_CHUNK + 3))
    everything = [*ids, 0]

    async def loader(wanted: list[int]) -> dict[int, bytes]:
        return {i: b"v%d" % i for i in wanted}

    assert await cache.load("thing", everything, loader) == {i: b"v%d" % i for i in everything}
    cached = await redis.keys(f"{prefix}*")
    assert len(cached) == len(everything), "every value was filled"
    await cache.invalidate("thing", ids)
    left = {key.decode() for key in await redis.keys(f"{prefix}*")}
    generations = [key for key in left if key.endswith(":gen")]
    assert len(generations) == len(ids), "one generation per invalidated entry"
    ttls = [await redis.ttl(key) for key in generations[:5]]
    assert all(0 < ttl <= GEN_TTL for ttl in ttls), ttls
    assert {key for key in left if key not in generations} == {
        key.decode() for key in cached if key.decode().endswith(":0")
    }, "only the entry not invalidated keeps its value"

    seen: list[list[int]] = []

    async def counting(wanted: list[int]) -> dict[int, bytes]:
        seen.append(sorted(wanted))
        return await loader(wanted)

    await cache.load("thing", everything, counting)
    assert seen == [ids], "the invalidated entries are read again, the other from the cache"


def test_decoded_values_are_decoded_once_per_distinct_bytes() -> None:
    from gim.pkg.cache import Decoded

    calls: list[tuple[bytes, int]] = []

    def decode(raw: bytes, user_id: int) -> tuple[int, ...]:
        calls.append((raw, user_id))
        return (user_id, len(raw))

    decoded = Decoded(decode, max_bytes=12)
    first = decoded(b"[1]", 7)
    assert decoded(b"[1]", 7) is first and calls == [(b"[1]", 7)]
    assert decoded(b"[1]", 8) == (8, 3), "the context is part of the key"
    assert decoded(b"[1, 2]", 7) == (7, 6), "changed bytes are decoded afresh"
    assert len(calls) == 3
    decoded(b"[3]", 9)  # 15 > 12 bytes: what was remembered is forgotten first
    decoded(b"[1]", 7)
    assert len(calls) == 5, "decoded again after the memo was forgotten"
