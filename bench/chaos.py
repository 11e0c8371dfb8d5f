"""`gim bench chaos`: persisted single-chat sends at a fixed rate through faults.

2 connect + 2 logic nodes + business (real processes), the bench's own redis-server
with its append-only file, MySQL (a fresh database, dropped after; SQLite with
`--sqlite`). Raw 2021-style TCP receivers and SDK receivers (`chaos_clients`); senders
call `LogicExt.SendMessage` over both logic nodes (one channel, round-robin, as behind a
balancer), each message with its own `request_id`, a failed send retried with the same
one until it returns a seq or `SEND_GIVE_UP` passes. During the send phase, spaced evenly, the
faults of `chaos_faults` are injected one after the other. Then every receiver syncs
once more and `chaos_verdict` counts what reached the screens; the database is checked
for messages stored twice. The nodes' logs are kept with `--logs DIR`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from grpc import aio

from gim.bench.chaos_clients import RawReceiver, SdkReceiver, content
from gim.bench.chaos_faults import FAULTS, Injector, KillableRedis
from gim.bench.chaos_report import ChaosReport
from gim.bench.chaos_verdict import Attempt, FaultRun, Sent, Shown, count_kind, failure_kinds, recovery
from gim.bench.fleet import Device
from gim.bench.report import progress
from gim.bench.services import DEV_CODE, Deployment, Storage, StorageOptions, credentials, deployment, storage
from gim.client.api import GimApi
from gim.pkg import redis_client
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.schema import user as user_table

DEFAULT_MYSQL = "mysql://root@127.0.0.1:3306"
SEND_TIMEOUT = 10.0  # seconds per send attempt
SEND_GIVE_UP = 60.0  # seconds after which a send that keeps failing is given up (reported)
RETRY_PAUSE = 0.05  # seconds before the first retry, doubled up to 1 s
MAX_IN_FLIGHT = 5000  # sends waiting for an answer; past it the offered rate drops (reported)
DRAIN = 30.0  # seconds to wait for the last messages to reach the screens
SETTLE = 15.0  # seconds to wait after the final sync


@dataclasses.dataclass(frozen=True)
class ChaosParams:
    messages: int = 12000  # N persisted single-chat sends in all
    rate: float = 200.0  # sends started per second
    receivers: int = 8  # raw 2021-style TCP clients
    sdk_receivers: int = 4  # gim.client.Client receivers
    senders: int = 10  # sending users (a message to receiver r goes through logic node r's turn)
    stuck_window: float = 5.0  # seconds: on a connected receiver's screen by then, or stuck
    timeout: float = 900.0  # seconds for the whole run (everything is stopped after)
    faults: str = ",".join(FAULTS)  # which faults, in this order
    logs: str = ""  # keep the nodes' logs (and Redis's) in this folder


def check(p: ChaosParams) -> list[str]:
    """The faults to inject, in order; ValueError naming what is wrong with `p`."""
    faults = [f for f in p.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"--faults: unknown {', '.join(unknown)} (choose from {','.join(FAULTS)})")
    if p.messages < 1 or p.rate <= 0 or p.senders < 1 or p.receivers < 0 or p.sdk_receivers < 0:
        raise ValueError(
            "--messages, --rate and --senders must be positive, --receivers and --sdk-receivers not negative"
        )
    if p.receivers + p.sdk_receivers < 1:
        raise ValueError("--receivers + --sdk-receivers must be at least 1")
    if p.stuck_window <= 0 or p.timeout <= 0:
        raise ValueError("--stuck-window and --timeout must be positive")
    return faults


async def run_chaos(opts: StorageOptions, p: ChaosParams, sqlite: bool = False) -> ChaosReport:
    faults = check(p)
    mysql = "" if sqlite else (opts.mysql or DEFAULT_MYSQL)
    rep = ChaosReport("chaos", {**dataclasses.asdict(p), "database": "mysql" if mysql else "sqlite"})
    with tempfile.TemporaryDirectory(prefix="gim-chaos-") as tmp:
        redis = KillableRedis(Path(tmp) / "redis", redis_client.free_port(), persist=True)
        await redis.start()
        try:
            async with asyncio.timeout(p.timeout):
                options = dataclasses.replace(opts, mysql=mysql, redis=redis.url, target=None)
                async with storage(options) as store, deployment(store, logic=2, connect=2, log_level="info") as dep:
                    try:
                        await _run(rep, store, dep, redis, p, faults)
                    finally:
                        _keep_logs(store.folder, Path(tmp) / "redis", p.logs)
        finally:
            redis.kill()
    return rep


def _keep_logs(node_logs: Path, redis_folder: Path, into: str) -> None:
    if not into:
        return
    target = Path(into)
    target.mkdir(parents=True, exist_ok=True)
    for log in [*node_logs.glob("*.log"), *redis_folder.glob("*.log")]:
        shutil.copy(log, target / log.name)
    progress(f"node logs kept in {target}")


class Run:
    """The plan, the receivers and what the senders saw."""

    def __init__(self, p: ChaosParams, senders: list[Device], raw: list[RawReceiver], sdk: list[SdkReceiver],
                 receiver_users: list[int]) -> None:  # fmt: skip
        self.p = p
        self.senders = senders
        self.raw, self.sdk = raw, sdk
        self.receiver_users = receiver_users
        total = len(receiver_users)
        self.plan = [Sent(tag, tag % len(senders), tag % total, request_id=tag + 1) for tag in range(p.messages)]
        self.attempts: list[Attempt] = []
        self.behind = 0  # sends started late because MAX_IN_FLIGHT were waiting

    def receivers(self) -> list[RawReceiver | SdkReceiver]:
        return [*self.raw, *self.sdk]

    def screens(self) -> dict[int, list[Shown]]:
        return {r.index: r.screen for r in self.receivers()}

    def shown_tags(self) -> set[tuple[int, int]]:
        return {(i, s.tag) for i, screen in self.screens().items() for s in screen}

    def missing(self) -> int:
        shown = self.shown_tags()
        return sum(1 for m in self.plan if m.accepted is not None and (m.receiver, m.tag) not in shown)


async def _run(rep: ChaosReport, store: Storage, dep: Deployment, redis: KillableRedis, p: ChaosParams,
               faults: list[str]) -> None:  # fmt: skip
    launcher = dep.launcher
    assert launcher is not None
    total = p.receivers + p.sdk_receivers
    devices = await dep.seed(p.senders + total)
    senders, receivers = devices[: p.senders], devices[p.senders :]
    phones = await _phones(store, [d.user_id for d in receivers[p.receivers :]])
    endpoints = [(e.host, e.port) for e in dep.endpoints()]
    business = launcher.addrs("business", "ext")[0]
    logic_addrs = launcher.addrs("logic", "ext")
    # Senders reach logic as apps behind a balancer do: one channel over both nodes, calls
    # round-robin (consecutive messages to one receiver go through different nodes), a
    # node that is down skipped once its connection fails.
    sdk_api = GimApi(",".join(logic_addrs), business, timeout=SEND_TIMEOUT)
    raw = [RawReceiver(i, d.user_id, d.device_id, d.token, endpoints) for i, d in enumerate(receivers[: p.receivers])]
    sdk = [
        SdkReceiver(p.receivers + i, phones[d.user_id], DEV_CODE, d.device_id, sdk_api, endpoints)
        for i, d in enumerate(receivers[p.receivers :])
    ]
    run = Run(p, senders, raw, sdk, [d.user_id for d in receivers])
    try:
        for r in raw:
            r.start()
        await asyncio.gather(*(r.wait_signed_in(60) for r in raw), *(s.start(60) for s in sdk))
        progress(
            f"{p.receivers} raw + {p.sdk_receivers} SDK receivers online; {p.messages} sends at {p.rate:g}/s "
            f"from {p.senders} senders over {len(logic_addrs)} logic nodes; faults: {', '.join(faults) or 'none'}"
        )
        injector = Injector(launcher, redis, store.database_url)
        start = time.monotonic()
        sending = asyncio.ensure_future(_send_all(run, sdk_api))
        injected = await _inject(injector, faults, start, p.messages / p.rate, sending)
        await sending
        sent_end = time.monotonic()
        accepted = sum(1 for m in run.plan if m.accepted is not None)
        progress(f"send phase over in {sent_end - start:.1f} s: {accepted} of {p.messages} accepted; draining")
        await _until(lambda: run.missing() == 0, DRAIN)
        progress(f"{run.missing()} accepted messages not on a screen yet; final sync")
        await asyncio.gather(*(r.final_sync(30) for r in raw), *(s.final_sync(30) for s in sdk), return_exceptions=True)
        await _until(lambda: run.missing() == 0, SETTLE)
        pids_before_stop = {name: node.pid for name, node in launcher.nodes.items()}
        died = [name for name, node in launcher.nodes.items() if not node.running]
    finally:
        await asyncio.gather(*(r.stop() for r in raw), *(s.stop() for s in sdk), return_exceptions=True)
        await sdk_api.close()
    stored = await _database_check(store, run)
    await launcher.stop()
    exits = {name: node.returncode for name, node in launcher.nodes.items()}
    _verdict(rep, run, injected, stored, start, sent_end, died, exits, pids_before_stop)


async def _phones(store: Storage, user_ids: list[int]) -> dict[int, str]:
    query = sa.select(user_table.c.id, user_table.c.phone_number).where(user_table.c.id.in_(user_ids))
    async with store.engine.connect() as conn:
        return {int(u): str(phone) for u, phone in await conn.execute(query)}


async def _until(done: Any, timeout: float, every: float = 0.2) -> bool:
    """Poll `done()` until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


async def _send_all(run: Run, api: GimApi) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    for i, message in enumerate(run.plan):
        await asyncio.sleep(max(0.0, start + i / run.p.rate - loop.time()))
        if gate.locked():
            run.behind += 1
        await gate.acquire()
        task = loop.create_task(_send(run, api, message))
        task.add_done_callback(lambda _: gate.release())
        tasks.append(task)
    await asyncio.gather(*tasks)


async def _send(run: Run, api: GimApi, m: Sent) -> None:
    creds = credentials(run.senders[m.sender])
    receiver = run.receiver_users[m.receiver]
    body = content(m.tag)
    give_up = time.monotonic() + SEND_GIVE_UP
    while True:
        m.attempts += 1
        began = time.monotonic()
        try:
            seq = await api.send_message(creds, cx.RT_USER, receiver, body, cx.MT_TEXT, request_id=m.request_id)
        except (GimError, aio.AioRpcError) as exc:
            run.attempts.append(Attempt(began, time.monotonic(), False, _why(exc)))
            if time.monotonic() > give_up:
                return
            await asyncio.sleep(min(RETRY_PAUSE * 2 ** (m.attempts - 1), 1.0))
            continue
        m.accepted, m.seq = time.monotonic(), seq
        run.attempts.append(Attempt(began, m.accepted, True))
        return


def _why(exc: BaseException) -> str:
    """A short name for a kind of failure (details cut before addresses and errno text)."""
    if isinstance(exc, GimError):
        return f"gim {int(exc.code)} {exc.message}"[:60]
    assert isinstance(exc, aio.AioRpcError)
    details = (exc.details() or "").split(";")[0].split("(")[0].strip()
    return f"{exc.code().name} {details}"[:60]


async def _inject(injector: Injector, faults: list[str], start: float, seconds: float,
                  sending: asyncio.Future[None]) -> list[FaultRun]:  # fmt: skip
    """Each fault at its turn, evenly over the send phase; one after the other."""
    done: list[FaultRun] = []
    for k, name in enumerate(faults):
        at = start + seconds * (k + 1) / (len(faults) + 1)
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if sending.done():
            progress(f"fault {name}: the send phase is over; injected anyway (use more --messages)")
        fault = await injector.by_name(name)()
        progress(f"fault {name} at {fault.at - start:.1f} s: {fault.detail}")
        done.append(fault)
    return done


@dataclasses.dataclass(frozen=True)
class Stored:
    duplicates: int  # extra rows of one (user, sender, request_id)
    examples: list[str]
    not_accepted: int  # stored for its receiver although no attempt returned a seq


async def _database_check(store: Storage, run: Run) -> Stored:
    """Messages stored twice for one recipient (same sender and request_id), and sends
    that gave up but were stored."""
    receivers = run.receiver_users
    dupes, examples, stored = 0, list[str](), set[int]()
    for attempt in range(3):  # the bench's own pooled connections may have been KILLed
        try:
            dupes, examples, stored = 0, [], set()
            async with store.engine.connect() as conn:
                for table in store.shards.tables:
                    c = table.c
                    query = (
                        sa.select(c.user_id, c.sender_id, c.request_id, sa.func.count())
                        .where(c.request_id != 0)
                        .group_by(c.user_id, c.sender_id, c.request_id)
                        .having(sa.func.count() > 1)
                    )
                    for user_id, sender_id, request_id, n in await conn.execute(query):
                        dupes += int(n) - 1
                        if len(examples) < 5:
                            examples.append(
                                f"user {user_id}: request_id {request_id} from {sender_id} stored {n} times"
                            )
                    ids = await conn.execute(sa.select(c.request_id).where(c.user_id.in_(receivers), c.request_id != 0))
                    stored.update(int(r) for (r,) in ids)
            break
        except sa.exc.DBAPIError:
            if attempt == 2:
                raise
    not_accepted = sum(1 for m in run.plan if m.accepted is None and m.request_id in stored)
    return Stored(dupes, examples, not_accepted)


def _verdict(rep: ChaosReport, run: Run, injected: list[FaultRun], stored: Stored, start: float, sent_end: float,
             died: list[str], exits: dict[str, int | None], pids: dict[str, int | None]) -> None:  # fmt: skip
    screens = run.screens()
    presence = {r.index: r.presence for r in run.receivers()}
    window = run.p.stuck_window
    rep.kinds["raw"] = count_kind(run.plan, [r.index for r in run.raw], screens, presence, window)
    rep.kinds["sdk"] = count_kind(run.plan, [s.index for s in run.sdk], screens, presence, window)
    first: dict[int, tuple[float, str]] = {}
    for screen in screens.values():
        for shown in screen:
            first.setdefault(shown.tag, (shown.at, shown.via))
    rep.recoveries = recovery(injected, run.attempts, run.plan, first, start, sent_end)
    accepted = [m for m in run.plan if m.accepted is not None]
    rep.results.update({
        "send_seconds": round(sent_end - start, 1),
        "accepted": len(accepted),
        "never_accepted": len(run.plan) - len(accepted),
        "retried_sends": sum(1 for m in accepted if m.attempts > 1),
        "failed_attempts": sum(1 for a in run.attempts if not a.ok),
        "sends_started_late": run.behind,
        "db_duplicates": stored.duplicates,
        "stored_not_accepted": stored.not_accepted,
    })  # fmt: skip
    for kind, counts in rep.kinds.items():
        for key in (
            "lost",
            "duplicated",
            "stuck",
            "out_of_order",
            "unexpected",
            "reconnects",
            "push_p50_ms",
            "push_p99_ms",
        ):
            rep.results[f"{kind}_{key}"] = getattr(counts, key)
    rep.failure_kinds = failure_kinds(run.attempts)
    rep.db_examples = stored.examples
    rep.nodes = {
        "died_unexpectedly": died,
        "exit_codes_at_stop": exits,
        "pids": pids,
        "restarted_cleanly": all(f.clean for f in injected),
    }
    rep.accounting = rep.summary(len(run.plan))
    rep.send_phase = (start, sent_end)
    if math.isinf(max((r.sends_back_s for r in rep.recoveries), default=0.0)):
        rep.results["sends_never_back"] = 1
