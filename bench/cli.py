"""`gim bench SCENARIO [options] --json PATH` (docs/benchmarks.md, docs/performance.md).

Exit code 0 only when every expected delivery arrived exactly once and in order.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import statistics
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gim.bench import target
from gim.bench.chaos import ChaosParams, run_chaos
from gim.bench.chaos import check as check_chaos
from gim.bench.chaos_report import ChaosReport
from gim.bench.chat import GroupParams, SingleParams, SyncParams, run_group, run_single, run_sync
from gim.bench.conn import ConnParams, run_conn
from gim.bench.fleet import SDK_HEARTBEAT_INTERVAL, Behaviour
from gim.bench.report import Report, progress
from gim.bench.room import RoomParams, run_room
from gim.bench.services import StorageOptions
from gim.pkg import config, log

PARAMS: dict[str, type] = {
    "conn": ConnParams,
    "single": SingleParams,
    "group": GroupParams,
    "room": RoomParams,
    "sync": SyncParams,
    "chaos": ChaosParams,
}
SCENARIOS = [*PARAMS, "cluster"]


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmark the services on this machine (docs/benchmarks.md)")
    bench.add_argument("scenario", choices=SCENARIOS)
    bench.add_argument("--json", default="", metavar="PATH", help="write the JSON document here ('-': stdout)")
    bench.add_argument("--mysql", default="", metavar="URL", help="MySQL server (a fresh database, dropped after)")
    bench.add_argument("--redis", default="", metavar="URL", help="Redis (a fresh key prefix, deleted after)")
    bench.add_argument("--shards", type=int, default=10, help="message tables")
    bench.add_argument("--sqlite", action="store_true", help="chaos: a temporary SQLite file instead of MySQL")
    bench.add_argument(
        "--no-request-id", action="store_true", help="sends carry no request_id metadata (clients send one; to compare)"
    )
    bench.add_argument("--no-ack", action="store_true", help="receivers do not ack (clients do; to compare)")
    bench.add_argument(
        "--heartbeat-interval", type=float, default=SDK_HEARTBEAT_INTERVAL, metavar="S",
        help=f"each connection's heartbeat period (the SDK's: {SDK_HEARTBEAT_INTERVAL:g} s; 0: none)",
    )  # fmt: skip
    bench.add_argument(
        "--baseline", default="", metavar="DIR",
        help="first run the scenario on nodes running the gim package in DIR/gim (e.g. an older commit), "
        "then on this code; ratios to it in the same run",
    )  # fmt: skip
    bench.add_argument(
        "--rounds", type=int, default=1, help="with --baseline: this many alternated runs of each, medians compared"
    )
    bench.add_argument(
        "--workers", type=int, default=2, metavar="N",
        help="cluster: N logic and N connect workers sharing each service's public ports (default 2)",
    )  # fmt: skip
    bench.add_argument(
        "--target", nargs="?", const="", default=None, metavar="SPEC",
        help="benchmark running services (addresses and storage from config/; SPEC: logic=,business=,tcp=,ws= HOST:PORT)",
    )  # fmt: skip
    seen: set[str] = set()
    for params in PARAMS.values():
        for field in dataclasses.fields(params):
            if field.name in seen:
                continue
            seen.add(field.name)
            bench.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=None)
    bench.set_defaults(func=main)


def _params(cls: type, args: argparse.Namespace) -> Any:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    return cls(**given)


async def _cluster(opts: StorageOptions, args: argparse.Namespace) -> Report:
    """single and room on `--workers` logic and connect workers (one shared LogicExt port,
    one shared TCP and WebSocket port, as `gim logic|connect --workers N`); one report."""
    from gim.bench.chat import run_single_on

    n = args.workers
    single = await run_single_on(opts, _params(SingleParams, args), connect_nodes=n, logic_nodes=n, reuse_port=True)
    room = await run_room(opts, _params(RoomParams, args), connect_nodes=n, logic_nodes=n, reuse_port=True)
    rep = Report("cluster", {"workers": args.workers, "single": single.params, "room": room.params})
    for part, name in ((single, "single"), (room, "room")):
        rep.results.update({f"{name}_{k}": v for k, v in part.results.items()})
        rep.limit.update({f"{name}_{k}": v for k, v in part.limit.items()})
        rep.ratio.update({f"{name}_{k}": v for k, v in part.ratio.items()})
    rep.accounting = single.accounting + room.accounting
    return rep


def run(args: argparse.Namespace) -> Report:
    clients = Behaviour(
        ack=not args.no_ack, heartbeat_interval=args.heartbeat_interval, request_id=not args.no_request_id
    )
    opts = StorageOptions(mysql=args.mysql, redis=args.redis, shards=args.shards, clients=clients)
    if args.baseline and (args.target is not None or args.scenario == "chaos"):
        sys.exit("gim bench: --baseline starts nodes of both versions itself; not with --target or chaos")
    if args.baseline and not (Path(args.baseline) / "gim" / "cmd").is_dir():
        sys.exit(f"gim bench: --baseline {args.baseline}: no gim package there (DIR/gim/cmd)")
    if args.scenario == "chaos" and (args.target is not None or args.redis):
        sys.exit("gim bench: chaos starts its own nodes and its own Redis (it kills them); drop --target / --redis")
    if args.scenario == "chaos":
        try:
            check_chaos(_params(ChaosParams, args))
        except ValueError as exc:
            sys.exit(f"gim bench chaos: {exc}")
    if args.scenario == "cluster" and args.workers < 1:
        sys.exit("gim bench: --workers must be at least 1")
    if args.target is not None:
        if args.scenario == "cluster":
            sys.exit("gim bench: cluster starts its own nodes; run single or room with --target instead")
        try:
            opts = dataclasses.replace(opts, target=target.parse(args.target, args.mysql, args.redis))
        except (ValueError, config.ConfigError) as exc:
            sys.exit(f"gim bench: {exc}")
    runners: dict[str, Callable[[], Coroutine[Any, Any, Report]]] = {
        "conn": lambda: run_conn(opts, _params(ConnParams, args)),
        "single": lambda: run_single(opts, _params(SingleParams, args)),
        "group": lambda: run_group(opts, _params(GroupParams, args)),
        "room": lambda: run_room(opts, _params(RoomParams, args)),
        "sync": lambda: run_sync(opts, _params(SyncParams, args)),
        "cluster": lambda: _cluster(opts, args),
        "chaos": lambda: run_chaos(opts, _params(ChaosParams, args), sqlite=args.sqlite),
    }
    if not args.baseline:
        rep = asyncio.run(runners[args.scenario]())
    else:
        current = opts
        ours: list[Report] = []
        theirs: list[Report] = []
        for round_ in range(1, max(1, args.rounds) + 1):  # alternated: a noisy neighbour hits both alike
            opts = dataclasses.replace(current, node_code=str(Path(args.baseline).resolve()))
            progress(f"round {round_}: baseline, nodes from {opts.node_code}")
            theirs.append(asyncio.run(runners[args.scenario]()))
            opts = current
            progress(f"round {round_}: this code")
            ours.append(asyncio.run(runners[args.scenario]()))
        rep = median_report(ours)
        compare(rep, median_report(theirs))
        rep.params["rounds"] = len(ours)
    rep.params["clients"] = dataclasses.asdict(clients)
    return rep


def median_report(reports: list[Report]) -> Report:
    """One report whose every figure, limit and ratio is the median over `reports` (the
    accounting: their sum)."""
    rep = dataclasses.replace(reports[0], results={}, limit={}, ratio={})
    for field in ("results", "limit", "ratio"):
        merged: dict[str, float] = getattr(rep, field)
        for key in getattr(reports[0], field):
            merged[key] = statistics.median(getattr(r, field)[key] for r in reports if key in getattr(r, field))
    for other in reports[1:]:
        rep.accounting = rep.accounting + other.accounting
    return rep


def compare(rep: Report, baseline: Report) -> None:
    """`baseline_X` for each figure of the baseline run, and `X_vs_baseline` (this ÷ baseline)."""
    for key, value in baseline.results.items():
        rep.results[f"baseline_{key}"] = value
        if value and key in rep.results:
            rep.ratio[f"{key}_vs_baseline"] = round(rep.results[key] / value, 3)
    for key, value in baseline.ratio.items():
        rep.ratio[f"baseline_{key}"] = value
    progress(f"baseline accounting: {baseline.accounting.as_dict()}; this code: {rep.accounting.as_dict()}")
    rep.accounting = rep.accounting + baseline.accounting


def main(args: argparse.Namespace) -> None:
    log.setup("warning")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress(f"scenario {args.scenario}")
    rep = run(args)
    print(rep.table(), flush=True)
    if args.json:
        rep.write_json(args.json)
    if isinstance(rep, ChaosReport):
        for warning in rep.warnings():
            progress(f"warning: {warning}")
        if rep.problems():
            sys.exit("gim bench chaos: FAILED\n" + "\n".join(f"- {p}" for p in rep.problems()))
        return
    if not rep.accounting.ok:
        a = rep.accounting
        sys.exit(
            f"gim bench: delivery errors: lost {a.lost}, duplicated {a.duplicated}, "
            f"out of order {a.out_of_order}, unexpected {a.unexpected}"
        )
