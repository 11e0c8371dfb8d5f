"""The `conn` scenario: N devices sign in (TCP, every `ws_every`-th over WebSocket) and
stay connected (a failed connect or sign-in retried as clients do: `bench.fleet.Retry`;
only devices that never signed in count as failures); sign-ins/s, connect RSS per connection, then heartbeat round trips with
everyone connected: for `heartbeat_phase` seconds every device heartbeats at the clients'
interval (the SDK's 60 s; `--heartbeat-interval`), the devices' offsets spread evenly over
it. `heartbeat_spread` > 0 first squeezes one heartbeat of every device into that many
seconds (a stress figure, not what clients do).

The load generator runs in worker processes of at most `per_worker` connections (a
process has 20,000 descriptors), each from its own source address 127.0.0.(2+i); the
devices are spread over `nodes` connect processes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from gim.bench.accounting import Summary
from gim.bench.report import Report, cpu_before, cpu_per, ms_percentiles, progress, rss_kib
from gim.bench.services import StorageOptions, deployment, storage
from gim.bench.worker import WorkerPool

# the nodes whose CPU a sign-in costs (`<service>_cpu_ms_per_sign_in`; with the database and
# Redis, the load generator is what else shares the machine)
SIGN_IN_SERVICES = ("business", "logic", "connect")


@dataclasses.dataclass(frozen=True)
class ConnParams:
    devices: int = 19000  # N
    nodes: int = 1  # connect processes
    ws_every: int = 10  # every 10th connection over WebSocket (0: TCP only)
    per_worker: int = 10000  # connections per load-generator process
    concurrency: int = 200  # sign-ins in flight per worker
    sign_in_attempts: int = 5  # per device, retried as the SDK does (bench.fleet.Retry)
    heartbeat_phase: float = 60.0  # seconds of heartbeats at the clients' interval (0: none)
    heartbeat_spread: float = 0.0  # > 0: first one heartbeat per connection squeezed into this many seconds


async def run_conn(opts: StorageOptions, p: ConnParams) -> Report:
    rep = Report("conn", dataclasses.asdict(p))
    workers = -(-p.devices // p.per_worker)
    async with storage(opts) as store, deployment(store, connect=p.nodes) as dep:
        devices = await dep.seed(p.devices)
        pids = dep.pids("connect")
        rss_before = sum(map(rss_kib, pids))
        cpu = cpu_before(dep.pids, SIGN_IN_SERVICES)
        nodes = len(dep.endpoints())
        progress(f"{p.devices} devices over {nodes} connect node(s), {workers} load-generator process(es)")
        async with WorkerPool(workers) as pool:
            commands = []
            for w in range(workers):
                tcp, ws = dep.endpoints(), dep.endpoints(ws=True)
                # a source address each (more than 28k sockets per address), on loopback
                source = f"127.0.0.{2 + w}" if all(e.host.startswith("127.") for e in tcp + ws) else ""
                endpoints = [[t.host, t.port, w.host, w.port, w.ws_url, source] for t, w in zip(tcp, ws, strict=True)]
                share = devices[w::workers]
                commands.append({
                    "op": "open", "endpoints": endpoints, "ws_every": p.ws_every, "concurrency": p.concurrency,
                    "retry": {"attempts": p.sign_in_attempts},
                    "devices": [[d.user_id, d.device_id, d.token] for d in share],
                })  # fmt: skip
            opened = await pool.ask(commands, timeout=60 + p.devices / 100)  # 100,000: 1,060 s
            signed = sum(o["signed"] for o in opened)
            ramp = max(o["end"] for o in opened) - min(o["start"] for o in opened)
            rss_after = sum(map(rss_kib, pids))
            cpu_per(rep, cpu, signed, "sign_in")
            progress(f"{signed} signed in over {ramp:.1f} s")
            squeezed = []
            if p.heartbeat_spread > 0:
                progress(f"one heartbeat each, squeezed into {p.heartbeat_spread:g} s")
                squeezed = await pool.ask([{"op": "heartbeat", "spread": p.heartbeat_spread}] * workers, timeout=120)
            interval = opts.clients.heartbeat_interval
            phase = []
            if p.heartbeat_phase > 0 and interval > 0:
                progress(f"heartbeats every {interval:g} s per device, spread, for {p.heartbeat_phase:g} s")
                phase = await pool.ask(
                    [
                        {"op": "heartbeats", "interval": interval, "seconds": p.heartbeat_phase, "first": w,
                         "stride": workers}
                        for w in range(workers)
                    ],
                    timeout=p.heartbeat_phase + 60,
                )  # fmt: skip
            rss_steady = sum(map(rss_kib, pids))
        rep.results["signed_in"] = signed
        rep.results["sign_in_retries"] = sum(o["retries"] for o in opened)
        rep.results["sign_in_failed"] = sum(o["failed"] for o in opened)  # never signed in, after every attempt
        for key, what in (("retry_reasons", "sign-in attempts retried"), ("reasons", "devices never signed in")):
            reasons: Counter[str] = Counter()
            for o in opened:
                reasons.update(o.get(key, {}))
            if reasons:
                progress(f"{what}, by reason: " + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()))
        rep.results["sign_ins_per_s"] = round(signed / ramp) if ramp else 0
        if pids:  # not for a --target (its processes are not known)
            rep.results["connect_rss_mib"] = round(rss_after / 1024)
            rep.results["rss_kib_per_conn"] = round((rss_after - rss_before) / max(signed, 1), 2)
            rep.results["rss_kib_per_conn_after_heartbeats"] = round((rss_steady - rss_before) / max(signed, 1), 2)
        rtts = [r for b in phase for r in b["rtts_ns"]]
        lost_beats = sum(b["lost"] for b in phase)
        if phase:
            rep.results["heartbeats"] = sum(b["sent"] for b in phase)
            rep.results["heartbeats_per_s"] = round(rep.results["heartbeats"] / p.heartbeat_phase)
            rep.results["heartbeats_lost"] = lost_beats
            rep.results.update(ms_percentiles(rtts, "heartbeat_rtt"))
        squeezed_rtts = [r for b in squeezed for r in b["rtts_ns"]]
        if squeezed:
            rep.results.update(ms_percentiles(squeezed_rtts, "squeezed_heartbeat_rtt"))
    failed = sum(o["failed"] for o in opened) + sum(b["failed"] for b in squeezed) + lost_beats
    # sign-ins and heartbeats: each one asked is answered or lost
    asked = p.devices + sum(b["sent"] for b in phase) + sum(len(b["rtts_ns"]) + b["failed"] for b in squeezed)
    rep.accounting = Summary(sent=asked, expected=asked, delivered=signed + len(rtts) + len(squeezed_rtts), lost=failed)
    return rep
