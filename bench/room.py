"""The `room` scenario: R connections in one room, PushRoom at a steady rate; and its
`socket` ceiling (the same frames, rate and connections against a minimal server)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time

from gim.bench import ceilings, messages
from gim.bench.fleet import QUIET, Device, Endpoint, Fleet
from gim.bench.report import Report, cpu_before, cpu_per, ms_percentiles, progress
from gim.bench.services import StorageOptions, credentials, deployment, storage
from gim.bench.spread import Spread
from gim.pkg.pb import connect_ext_pb2 as cx

DRAIN_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class RoomParams:
    subscribers: int = 10000  # R
    pushes: int = 60  # K
    rate: float = 20.0  # pushes per second


async def socket_writes_per_second(p: RoomParams) -> float:
    """The same R connections, K frames at the same rate, from a minimal asyncio server."""
    async with ceilings.ceiling_server("socket") as port:
        fleet = Fleet(behaviour=QUIET)
        try:
            fake = [Device(i, i, "") for i in range(1, p.subscribers + 1)]
            await fleet.open(fake, [Endpoint("127.0.0.1", port)], concurrency=500)
            for d in fake:
                fleet.accounting.expect(d.device_id, range(1, p.pushes + 1))
            start = time.perf_counter()
            await ceilings.socket_go(port, p.pushes, p.rate)
            await fleet.wait_delivered(DRAIN_TIMEOUT)
            return fleet.delivered / (time.perf_counter() - start)
        finally:
            fleet.close()


async def run_room(
    opts: StorageOptions, p: RoomParams, connect_nodes: int = 1, logic_nodes: int = 1, reuse_port: bool = False
) -> Report:
    """`room` on that many nodes; `reuse_port`: workers, as `run_single_on`."""
    rep = Report("room", {**dataclasses.asdict(p), "connect_nodes": connect_nodes, "logic_nodes": logic_nodes})
    progress(f"socket ceiling: {p.subscribers} connections, {p.pushes} frames at {p.rate:g}/s")
    rep.limit["socket_writes_per_s"] = round(await socket_writes_per_second(p))
    async with (
        storage(opts) as store,
        deployment(store, logic=logic_nodes, connect=connect_nodes, reuse_port=reuse_port) as dep,
    ):
        pusher, *devices = await dep.seed(p.subscribers + 1)
        fleet = Fleet(behaviour=opts.clients)
        clients = await fleet.open(devices, dep.endpoints(), concurrency=200, timeout=120)
        room_id = random.randrange(1, 1 << 40)
        await fleet.subscribe_room(clients, room_id)
        for d in devices:
            fleet.accounting.expect(d.device_id, range(1, p.pushes + 1))
        progress(f"{p.subscribers} subscribed to room {room_id}; {p.pushes} pushes at {p.rate:g}/s")
        creds, api = credentials(pusher), dep.caller(pusher.device_id)
        spread = Spread(dep) if reuse_port else None
        if spread is not None:
            await spread.start()
        loop = asyncio.get_running_loop()
        cpu = cpu_before(dep.pids, ("logic", "connect"))
        start = time.perf_counter()
        begin = loop.time()
        failures = 0
        async with asyncio.timeout(p.pushes / p.rate + DRAIN_TIMEOUT):
            for k in range(1, p.pushes + 1):
                await asyncio.sleep(max(0.0, begin + (k - 1) / p.rate - loop.time()))
                try:  # one at a time: the room seq order is the publish order
                    await api.push_room(creds, room_id, messages.content(k), message_type=cx.MT_CUSTOM)
                except Exception:
                    failures += 1
        pushed = time.perf_counter()
        await fleet.wait_delivered(DRAIN_TIMEOUT)
        cpu_per(rep, cpu, p.pushes, "push")  # a push: one delivery to each subscriber
        rep.results["pushes_per_s"] = round(p.pushes / (pushed - start), 1)
        rep.results["deliveries_per_s"] = round(fleet.delivered / (time.perf_counter() - start))
        rep.results.update(ms_percentiles(fleet.latencies, "latency"))
        rep.results["push_failures"] = failures
        rep.results["refused_sign_ins"] = fleet.refused_sign_ins
        if spread is not None:
            rep.results.update(await spread.figures(room_pushes=p.pushes))
        rep.accounting = dataclasses.replace(fleet.accounting.summary(), sent=p.pushes)
        fleet.close()
    rep.set_ratio("deliveries_per_socket", "deliveries_per_s", "socket_writes_per_s")
    return rep
