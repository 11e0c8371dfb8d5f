"""Bounded work in logic's message store (issue 11): a full queue answers
RESOURCE_EXHAUSTED, a send whose caller has gone before its batch starts is not stored,
and metadata out of range is 10001 without failing anybody else's send."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from gim.client.api import Credentials
from gim.internal.logic.message_store import MessageStore
from gim.internal.logic.values import MessageRow
from gim.pkg.errors import Code, GimError, Overloaded
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.schema import MessageShards
from gimtest.cluster import SHARDS
from gimtest.waiting import until

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.callables import ExpectCode
    from gimtest.cluster import Cluster


def text(value: str) -> bytes:
    return cx.Text(text=value).SerializeToString()


def row(sender: int, receiver: int, body: str) -> MessageRow:
    return MessageRow(0, cx.ST_USER, sender, cx.RT_USER, receiver, [], cx.MT_TEXT, text(body), 1)


class Gate:
    """Holds the store's writer at the start of its next batch until `open()`: what comes
    meanwhile waits in the queue, as behind a slow transaction."""

    def __init__(self, store: MessageStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = asyncio.Event()
        self._open = asyncio.Event()
        original: Callable[[list[Any]], Awaitable[Any]] = store._store_attempts

        async def gated(batch: list[Any]) -> Any:
            self.entered.set()
            await self._open.wait()
            return await original(batch)

        monkeypatch.setattr(store, "_store_attempts", gated)

    def open(self) -> None:
        self._open.set()


async def contents(store: MessageStore, user_id: int) -> list[bytes]:
    return [m.row.content for m in await store.after(user_id, 0, 100)]


async def pair(cluster: Cluster) -> tuple[Credentials, Credentials]:
    (a,), (b,) = await asyncio.gather(cluster.new_user(), cluster.new_user())
    return a, b


async def test_a_full_store_queue_answers_resource_exhausted(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    store: MessageStore = cluster.logic.messages.store
    monkeypatch.setattr(store, "max_pending_rows", 2)
    sender, receiver = await pair(cluster)
    gate = Gate(store, monkeypatch)
    api = cluster.api
    first = asyncio.ensure_future(api.send_message(sender, cx.RT_USER, receiver.user_id, text("first")))
    await asyncio.wait_for(gate.entered.wait(), 10)  # the writer holds the first send's batch
    second = asyncio.ensure_future(api.send_message(sender, cx.RT_USER, receiver.user_id, text("second")))
    await until(lambda: store.pending_rows == 2, "the second send waits in the queue")

    with pytest.raises(aio.AioRpcError) as refused:
        await api.send_message(sender, cx.RT_USER, receiver.user_id, text("third"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many messages waiting to be stored" in (refused.value.details() or "")

    gate.open()
    assert await asyncio.wait_for(asyncio.gather(first, second), 10) == [1, 2]
    assert await contents(store, receiver.user_id) == [text("first"), text("second")], "the refused send is not stored"
    assert store.pending_rows == 0


async def test_a_lone_send_larger_than_the_bound_still_gets_in(engine: AsyncEngine) -> None:
    store = MessageStore(engine, MessageShards(SHARDS), max_pending_rows=2)
    base = random.randrange(10**12, 10**13)
    members = [base + i for i in range(10)]
    assert await store.store(row(members[0], base, "to a group"), members) == dict.fromkeys(members, 1)


async def test_the_bound_counts_what_waits(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """At MessageStore level: beyond the bound `Overloaded`, nothing stored; a server event
    of a committed change (`follows_commit`) still queues."""
    store = MessageStore(engine, MessageShards(SHARDS), max_pending_rows=3)
    base = random.randrange(10**12, 10**13)
    a, b, c = base, base + 1, base + 2
    gate = Gate(store, monkeypatch)
    held = asyncio.ensure_future(store.store(row(a, b, "held"), [a, b]))
    await asyncio.wait_for(gate.entered.wait(), 10)
    queued = asyncio.ensure_future(store.store(row(a, b, "queued"), [a, b]))
    await until(lambda: store.pending_rows == 2, "queued")
    with pytest.raises(Overloaded):
        await store.store(row(c, b, "refused"), [c, b])
    event = asyncio.ensure_future(store.store(row(0, b, "event"), [b, c], follows_commit=True))
    await until(lambda: store.pending_rows == 4, "the event queues past the bound")
    gate.open()
    await asyncio.wait_for(asyncio.gather(held, queued, event), 10)
    assert await contents(store, b) == [text("held"), text("queued"), text("event")]
    assert await contents(store, c) == [text("event")], "the refused send stored nothing"


async def test_a_send_whose_deadline_passed_before_its_batch_is_not_stored(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**12, 10**13)
    a, b = base, base + 1
    loop = asyncio.get_running_loop()
    with pytest.raises(GimError) as late:
        await store.store(row(a, b, "too late"), [a, b], deadline=loop.time() - 1)
    assert late.value.code == Code.BAD_REQUEST and "nothing stored" in late.value.message
    assert await store.max_seq(b) == 0 and await contents(store, b) == []

    gate = Gate(store, monkeypatch)
    held = asyncio.ensure_future(store.store(row(a, b, "held"), [a, b]))
    await asyncio.wait_for(gate.entered.wait(), 10)
    # its deadline is now: it has passed by the time the writer takes it
    expired = asyncio.ensure_future(store.store(row(a, b, "expired"), [a, b], deadline=loop.time()))
    on_time = asyncio.ensure_future(store.store(row(a, b, "on time"), [a, b], deadline=loop.time() + 3600))
    await until(lambda: store.pending_rows == 4, "both wait")
    gate.open()
    assert (await asyncio.wait_for(held, 10))[b] == 1
    with pytest.raises(GimError):
        await asyncio.wait_for(expired, 10)
    assert (await asyncio.wait_for(on_time, 10))[b] == 2, "no seq was spent on the expired send"
    assert await contents(store, b) == [text("held"), text("on time")]


async def test_a_send_whose_caller_was_cancelled_while_waiting_is_not_stored(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MessageStore(engine, MessageShards(SHARDS))
    base = random.randrange(10**12, 10**13)
    a, b = base, base + 1
    gate = Gate(store, monkeypatch)
    held = asyncio.ensure_future(store.store(row(a, b, "held"), [a, b]))
    await asyncio.wait_for(gate.entered.wait(), 10)
    gone = asyncio.ensure_future(store.store(row(a, b, "gone"), [a, b]))
    await until(lambda: store.pending_rows == 2, "it waits")
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert store.pending_rows == 0, "a cancelled send no longer counts against the bound"
    gate.open()
    await asyncio.wait_for(held, 10)
    after = await store.store(row(a, b, "after"), [a, b])
    assert after[b] == 2
    assert await contents(store, b) == [text("held"), text("after")]


async def test_a_grpc_call_cancelled_while_its_send_waits_is_not_stored(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the client cancels (a deadline passing does the same) while the send
    waits for the writer; gRPC cancels the handler and the send is skipped."""
    store: MessageStore = cluster.logic.messages.store
    sender, receiver = await pair(cluster)
    gate = Gate(store, monkeypatch)
    api = cluster.api
    first = asyncio.ensure_future(api.send_message(sender, cx.RT_USER, receiver.user_id, text("first")))
    await asyncio.wait_for(gate.entered.wait(), 10)
    req = lx.SendMessageReq(receiver_type=cx.RT_USER, receiver_id=receiver.user_id, message_type=cx.MT_TEXT,
                            message_content=text("abandoned"), is_persist=True)  # fmt: skip
    call = api.logic.SendMessage(req, metadata=sender.metadata(), timeout=30)
    await until(lambda: store.pending_rows == 2, "the second send waits in the queue")
    call.cancel()
    await until(lambda: store.pending_rows == 0, "the handler was cancelled")
    gate.open()
    assert await asyncio.wait_for(first, 10) == 1
    assert await api.send_message(sender, cx.RT_USER, receiver.user_id, text("next")) == 2
    assert await contents(store, receiver.user_id) == [text("first"), text("next")]


@pytest.mark.parametrize("request_id", [2**63, -(2**63) - 1, 10**30])
async def test_a_request_id_beyond_int64_is_10001_and_nothing_stored(  # type: ignore[no-untyped-def]
    cluster, expect_code, message_rows, request_id
) -> None:
    sender, receiver = await pair(cluster)
    before = await message_rows()
    error = await expect_code(
        cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, text("x"), request_id=request_id),
        Code.BAD_REQUEST,
    )
    assert "request_id must be a 64-bit signed number" in error.message
    assert await message_rows() == before
    assert await cluster.api.send_message(sender, cx.RT_USER, receiver.user_id, text("y"), request_id=2**63 - 1) == 1


async def test_a_bad_request_id_does_not_fail_the_sends_batched_with_it(
    cluster: Cluster, expect_code: ExpectCode
) -> None:
    """Business sends (LogicInt) carry request_id too: one out of range among concurrent
    ones is refused alone; the others are stored."""
    sender, receiver = await pair(cluster)
    api = cluster.api
    good = [api.send_message(sender, cx.RT_USER, receiver.user_id, text(f"ok {i}"), request_id=i + 1) for i in range(5)]
    bad = api.call(
        cluster.logic_int.SendMessage,
        lx.SendMessageReq(
            receiver_type=cx.RT_USER, receiver_id=receiver.user_id, message_type=cx.MT_TEXT, message_content=text("bad")
        ),
        Credentials(0, 0, ""),
        request_id=2**64,
    )
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], GimError) and results[-1].code == Code.BAD_REQUEST
    assert sorted(results[:-1]) == [1, 2, 3, 4, 5]  # type: ignore[type-var]


@pytest.mark.parametrize("field", ["user_id", "device_id"])
async def test_an_identity_beyond_int64_is_10001(cluster, expect_code, message_rows, field) -> None:  # type: ignore[no-untyped-def]
    sender, receiver = await pair(cluster)
    before = await message_rows()
    creds = Credentials(
        2**63 if field == "user_id" else sender.user_id,
        2**63 if field == "device_id" else sender.device_id,
        sender.token,
    )
    await expect_code(cluster.api.send_message(creds, cx.RT_USER, receiver.user_id, text("x")), Code.BAD_REQUEST)
    assert await message_rows() == before
