"""Scenarios on stored messages: `single`, `group` and `sync`."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence

from grpc import aio

from gim.bench import ceilings, messages
from gim.bench.fleet import Device, Fleet
from gim.bench.report import Report, cpu_before, cpu_per, ms_percentiles, progress, rss_kib
from gim.bench.services import Deployment, Storage, StorageOptions, credentials, current_seqs, deployment, storage
from gim.bench.spread import Spread
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_ext_pb2 as lx
from gim.pkg.schema import SEQ_OBJECT_USER
from gim.pkg.schema import seq as seq_table

DRAIN_TIMEOUT = 30.0  # seconds to wait for the last deliveries after the last send


@dataclasses.dataclass(frozen=True)
class SingleParams:
    pairs: int = 100  # M senders, each sending to its own online receiver
    messages: int = 30  # per sender, back to back (the throughput phase)
    rate: float = 0.0  # msg/s of the paced phase (latency at a fixed load); 0: half the measured sends/s
    paced_seconds: float = 3.0
    rpc_calls: int = 6000


@dataclasses.dataclass(frozen=True)
class GroupParams:
    members: int = 500  # G, all online
    messages: int = 100  # K
    senders: int = 10  # members sending concurrently


@dataclasses.dataclass(frozen=True)
class SyncParams:
    messages: int = 20000  # S stored for one user


Send = Callable[[int], Awaitable[int]]  # tag -> the sender's seq


def _failed(exc: BaseException) -> int:
    """Count one failed send (1), telling why once per kind of failure."""
    why = f"{exc.code().name} {exc.details()}" if isinstance(exc, aio.AioRpcError) else repr(exc)
    if why not in _failure_kinds:
        _failure_kinds.add(why)
        progress(f"a send failed: {why}")
    return 1


_failure_kinds: set[str] = set()


async def _sends(
    senders: Sequence[Send], per_sender: int, tags: itertools.count[int], timeout: float
) -> tuple[list[int], int]:
    """Each sender sends `per_sender` messages back to back; (their seqs, failures)."""
    seqs: list[int] = []
    failures = 0

    async def one(send: Send) -> None:
        nonlocal failures
        for _ in range(per_sender):
            try:
                seqs.append(await send(next(tags)))
            except Exception as exc:
                failures += _failed(exc)

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(one(s) for s in senders))
    return seqs, failures


async def _paced(sends: Sequence[Send], rate: float, seconds: float, tags: itertools.count[int]) -> tuple[int, int]:
    """Sends at `rate` msg/s for `seconds`, round-robin over `sends`; (sent, failed)."""
    loop = asyncio.get_running_loop()
    start, total = loop.time(), int(rate * seconds)
    pending: set[asyncio.Task[int]] = set()
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        pending.add(asyncio.ensure_future(sends[i % len(sends)](next(tags))))
    done, _ = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT) if pending else (set(), set())
    failed = sum(_failed(e) for t in done if (e := t.exception()) is not None) + len(pending) - len(done)
    return total, failed


class RequestIds:
    """Unique `request_id`s as 2021 clients make them: the call's UnixNano (one more than
    the last one when the clock has not moved)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


_request_ids = RequestIds()


def _sender(dep: Deployment, device: Device, receiver_type: int, receiver_id: int, request_id: bool = True) -> Send:
    """Sends to the receiver; with `request_id`, each call carries a new one (as clients do)."""
    creds = credentials(device)
    api = dep.caller(device.device_id)

    async def send(tag: int) -> int:
        return await api.send_message(
            creds, receiver_type, receiver_id, messages.content(tag), message_type=cx.MT_CUSTOM,
            request_id=_request_ids() if request_id else 0,
        )  # fmt: skip

    return send


def _request_size(receiver_type: int) -> int:
    req = lx.SendMessageReq(
        receiver_type=receiver_type, receiver_id=1 << 40, message_type=cx.MT_CUSTOM,  # type: ignore[arg-type]
        message_content=messages.content(1), is_persist=True,
    )  # fmt: skip
    return req.ByteSize()


async def run_single(opts: StorageOptions, p: SingleParams) -> Report:
    return await run_single_on(opts, p)


async def run_single_on(
    opts: StorageOptions, p: SingleParams, connect_nodes: int = 1, logic_nodes: int = 1, reuse_port: bool = False
) -> Report:
    """`single` on that many nodes; `reuse_port`: they are workers sharing each service's
    public ports, and the results say how the work spread over them (`bench.spread`)."""
    rep = Report("single", {**dataclasses.asdict(p), "connect_nodes": connect_nodes, "logic_nodes": logic_nodes})
    progress(f"rpc ceiling: {p.rpc_calls} echo calls at concurrency {p.pairs}")
    rep.limit["rpc_calls_per_s"] = round(
        await ceilings.rpc_calls_per_second(p.rpc_calls, p.pairs, _request_size(cx.RT_USER))
    )
    async with (
        storage(opts) as store,
        deployment(store, logic=logic_nodes, connect=connect_nodes, reuse_port=reuse_port) as dep,
    ):
        devices = await dep.seed(2 * p.pairs)
        senders, receivers = devices[: p.pairs], devices[p.pairs :]
        fleet = Fleet(behaviour=opts.clients)
        # receivers alternate over the connect nodes (workers: the kernel spreads them)
        await fleet.open(receivers, dep.endpoints())
        progress(f"{p.pairs} receivers online; {p.pairs} senders x {p.messages} messages")
        with_id = opts.clients.request_id
        sends = [_sender(dep, s, cx.RT_USER, r.user_id, with_id) for s, r in zip(senders, receivers, strict=True)]
        tags = itertools.count(1)
        spread = Spread(dep) if reuse_port else None
        if spread is not None:
            await spread.start()
        cpu = cpu_before(dep.pids, ("logic", "connect"))
        start = time.perf_counter()
        seqs, failures = await _sends(sends, p.messages, tags, timeout=90)
        elapsed = time.perf_counter() - start
        await fleet.wait_count(len(seqs), DRAIN_TIMEOUT)
        delivered_at = time.perf_counter()
        cpu_per(rep, cpu, len(seqs), "send")
        rep.results["sends_per_s"] = round(len(seqs) / elapsed)
        rep.results["deliveries_per_s"] = round(fleet.delivered / (delivered_at - start))
        rep.results.update(ms_percentiles(fleet.latencies, "latency"))
        fleet.latencies = type(fleet.latencies)("q")
        rate = p.rate or max(1.0, round(rep.results["sends_per_s"] / 2))  # latency at half the rate it can take
        progress(
            f"throughput: {rep.results['sends_per_s']} sends/s; paced phase at {rate:g} msg/s for {p.paced_seconds:g} s"
        )
        paced, paced_failed = await _paced(sends, rate, p.paced_seconds, tags)
        failures += paced_failed
        rep.results["paced_rate"] = rate
        rep.results.update(ms_percentiles(fleet.latencies, "paced_latency"))
        await _expect_all(store, fleet, receivers)
        await fleet.wait_delivered(DRAIN_TIMEOUT)
        rep.accounting = dataclasses.replace(fleet.accounting.summary(), sent=len(seqs) + paced)
        rep.results["send_failures"] = failures
        if spread is not None:
            rep.results.update(await spread.figures())
        if dep.pids("logic"):  # not for a --target
            rep.results["logic_rss_mib"] = round(sum(map(rss_kib, dep.pids("logic"))) / 1024)
        fleet.close()
    rep.set_ratio("sends_per_rpc", "sends_per_s", "rpc_calls_per_s")
    return rep


async def _expect_all(
    store: Storage,
    fleet: Fleet,
    receivers: Sequence[Device],
    base: dict[int, int] | None = None,
    own: dict[int, set[int]] | None = None,
) -> None:
    """Each receiver expects every seq it holds after `base` (its seq before the sends),
    except its `own` messages (a sender's device does not get what it sent)."""
    now = await current_seqs(store, [d.user_id for d in receivers])
    for d in receivers:
        seqs = range((base or {}).get(d.user_id, 0) + 1, now[d.user_id] + 1)
        mine = (own or {}).get(d.user_id)
        fleet.accounting.expect(d.device_id, [s for s in seqs if s not in mine] if mine else seqs)


async def run_group(opts: StorageOptions, p: GroupParams) -> Report:
    rep = Report("group", dataclasses.asdict(p))
    async with storage(opts) as store:
        progress(f"db ceiling: {p.messages} inserts of {p.members} message rows at concurrency {p.senders}")
        rep.limit["db_rows_per_s"] = round(await ceilings.db_rows_per_second(store, p.messages, p.members, p.senders))
        async with deployment(store) as dep:
            devices = await dep.seed(p.members)
            owner = credentials(devices[0])
            group_id = await dep.api.create_group(owner, "bench", [d.user_id for d in devices[1:]])
            fleet = Fleet(behaviour=opts.clients)
            base = await current_seqs(store, [d.user_id for d in devices])
            fleet.sync_from.update({d.device_id: base[d.user_id] for d in devices})  # they have seen the group's events
            await fleet.open(devices, dep.endpoints())
            progress(f"group of {p.members} online; {p.messages} messages from {p.senders} members")
            senders = [_sender(dep, d, cx.RT_GROUP, group_id, opts.clients.request_id) for d in devices[: p.senders]]
            tags = itertools.count(1)
            sent_at: dict[int, int] = {}
            answers = array("q")  # ns from the call to its answer

            def timed(send: Send) -> Send:
                async def go(tag: int) -> int:
                    sent_at[tag] = time.time_ns()
                    t0 = time.perf_counter_ns()
                    seq = await send(tag)
                    answers.append(time.perf_counter_ns() - t0)
                    return seq

                return go

            per_sender = -(-p.messages // p.senders)
            cpu = cpu_before(dep.pids, ("logic", "connect"))
            start = time.perf_counter()
            seqs, failures = await _sends([timed(s) for s in senders], per_sender, tags, timeout=90)
            stored_at = time.perf_counter()
            own = await _own_seqs(store, devices[: p.senders], base)
            await _expect_all(store, fleet, devices, base, own)
            await fleet.wait_delivered(DRAIN_TIMEOUT)
            done_at = time.perf_counter()
            cpu_per(rep, cpu, len(seqs), "send")
            rep.results["sends_per_s"] = round(len(seqs) / (stored_at - start), 1)
            rep.results.update(ms_percentiles(answers, "answer"))
            rep.results["stored_rows_per_s"] = round(len(seqs) * p.members / (stored_at - start))
            rep.results["deliveries_per_s"] = round(fleet.delivered / (done_at - start))
            reach = [fleet.last_arrival[t] - sent_at[t] for t in sent_at if t in fleet.last_arrival]
            rep.results.update(ms_percentiles(reach, "all_members"))
            rep.results["send_failures"] = failures
            rep.accounting = dataclasses.replace(fleet.accounting.summary(), sent=len(seqs))
            fleet.close()
    rep.set_ratio("stored_rows_per_db", "stored_rows_per_s", "db_rows_per_s")
    return rep


async def _own_seqs(store: Storage, senders: Sequence[Device], base: dict[int, int]) -> dict[int, set[int]]:
    """The seqs of each sender's own messages (not pushed to the sending device)."""
    own: dict[int, set[int]] = {}
    for d in senders:
        table = store.shards.table_for(d.user_id)
        query = (
            table.select()
            .with_only_columns(table.c.seq)
            .where(table.c.user_id == d.user_id, table.c.sender_id == d.user_id, table.c.seq > base[d.user_id])
        )
        async with store.engine.connect() as conn:
            own[d.user_id] = {int(s) for s in await conn.scalars(query)}
    return own


async def run_sync(opts: StorageOptions, p: SyncParams) -> Report:
    """One new device signs in to S stored messages and syncs them page by page from 0, as
    a client does once signed in (and acks each page)."""
    rep = Report("sync", dataclasses.asdict(p))
    async with storage(opts) as store, deployment(store) as dep:
        (device,) = await dep.seed(1)
        await _store_messages(store, device.user_id, p.messages)
        fleet = Fleet(behaviour=opts.clients)
        fleet.accounting.expect(device.device_id, range(1, p.messages + 1))
        fleet.accounting.sent = p.messages
        progress(f"{p.messages} stored messages; signing in and syncing from seq 0")
        cpu = cpu_before(dep.pids, ("logic", "connect"))
        start = time.perf_counter()
        await fleet.open([device], dep.endpoints())
        await fleet.wait_delivered(90)
        elapsed = time.perf_counter() - start
        cpu_per(rep, cpu, fleet.sync_pages, "page")
        rep.results["messages_per_s"] = round(fleet.accounting.delivered_count() / elapsed)
        rep.results["pages"] = fleet.sync_pages
        rep.results["page_ms"] = round(elapsed / max(fleet.sync_pages, 1) * 1000, 2)
        rep.accounting = fleet.accounting.summary()
        fleet.close()
    return rep


async def _store_messages(store: Storage, user_id: int, count: int, chunk: int = 500) -> None:
    """`count` messages for `user_id` with seqs 1..count, and its seq row, straight in the database."""
    table = store.shards.table_for(user_id)
    async with store.engine.begin() as conn:
        for first in range(1, count + 1, chunk):
            rows = [
                {
                    "user_id": user_id,
                    "seq": seq,
                    "request_id": 0,
                    "sender_type": cx.ST_USER,
                    "sender_id": user_id,
                    "receiver_type": cx.RT_USER,
                    "receiver_id": user_id,
                    "to_user_ids": "",
                    "type": cx.MT_CUSTOM,
                    "content": messages.content(seq),
                    "send_time": 0,
                    "status": 1,
                }  # fmt: skip
                for seq in range(first, min(first + chunk, count + 1))
            ]
            await conn.execute(table.insert().values(rows))
        await conn.execute(seq_table.insert().values(object_type=SEQ_OBJECT_USER, object_id=user_id, seq=count))
