"""A benchmark's outcome: figures, ceilings, ratios, accounting; printed and as JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from gim.bench.accounting import Summary


def percentile(samples: Iterable[int | float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no samples."""
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def ms_percentiles(samples_ns: Iterable[int], prefix: str) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        f"{prefix}_p50_ms": round(percentile(ordered, 50) / 1e6, 2),
        f"{prefix}_p99_ms": round(percentile(ordered, 99) / 1e6, 2),
    }


def rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux /proc), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclasses.dataclass
class CpuMark:
    """The CPU used so far by each service's nodes (those started here) and by the whole
    machine, when a measured phase starts (`cpu_before`, then `cpu_per`)."""

    nodes: dict[str, dict[int, float]]  # service -> pid -> CPU seconds
    machine: float  # busy CPU seconds of all cores
    at: float  # time.monotonic()


def cpu_before(pids_of: Callable[[str], list[int]], services: Iterable[str]) -> CpuMark:
    nodes = {service: {pid: cpu_seconds([pid]) for pid in pids_of(service)} for service in services}
    return CpuMark(nodes, machine_busy_seconds(), time.monotonic())


def cpu_per(rep: Report, before: CpuMark, count: int, unit: str) -> None:
    """`<service>_cpu_ms_per_<unit>`: the CPU each service's nodes in `before` used since,
    per `count` units of work: steadier than a rate when the machine is shared.

    `machine_cpu_ms_per_<unit>` is the same for every process on the machine (the load
    generator, the database, Redis and any neighbour included) and `machine_busy` the
    share of all cores they kept busy: work that costs C ms of machine CPU cannot go
    faster than one unit every C / cores ms here, whatever its latency elsewhere."""
    if not count:
        return
    for service, nodes in before.nodes.items():
        if nodes:
            used = cpu_seconds(nodes) - sum(nodes.values())
            rep.results[f"{service}_cpu_ms_per_{unit}"] = round(used / count * 1000, 3)
    busy, elapsed = machine_busy_seconds() - before.machine, time.monotonic() - before.at
    if busy > 0 and elapsed > 0:
        rep.results[f"machine_cpu_ms_per_{unit}"] = round(busy / count * 1000, 3)
        rep.results["machine_busy"] = round(busy / (elapsed * (os.cpu_count() or 1)), 3)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat: user, nice,
    system, irq, softirq, steal); 0 where there is no /proc."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) the processes have used so far (Linux /proc), seconds: the
    cost of work measured on a machine whose neighbours make wall-clock rates move."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclasses.dataclass
class Report:
    scenario: str
    params: dict[str, Any]
    results: dict[str, float] = dataclasses.field(default_factory=dict)
    limit: dict[str, float] = dataclasses.field(default_factory=dict)
    ratio: dict[str, float] = dataclasses.field(default_factory=dict)
    accounting: Summary = dataclasses.field(default_factory=lambda: Summary(0, 0, 0))

    def set_ratio(self, name: str, figure: str, limit: str) -> None:
        if self.limit.get(limit):
            self.ratio[name] = round(self.results[figure] / self.limit[limit], 3)

    def document(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "params": self.params,
            "results": self.results,
            "limit": self.limit,
            "ratio": self.ratio,
            "accounting": self.accounting.as_dict(),
            "machine": machine(),
        }

    def write_json(self, path: str) -> None:
        text = json.dumps(self.document(), indent=2) + "\n"
        if path == "-":
            sys.stdout.write(text)
        else:
            Path(path).write_text(text)

    def table(self) -> str:
        rows: list[tuple[str, str]] = [("scenario", self.scenario)]
        rows += [(f"param {k}", str(v)) for k, v in self.params.items()]
        rows += [(k, _fmt(v)) for k, v in self.results.items()]
        rows += [(f"limit {k}", _fmt(v)) for k, v in self.limit.items()]
        rows += [(f"ratio {k}", _fmt(v)) for k, v in self.ratio.items()]
        rows += [(f"accounting {k}", str(v)) for k, v in self.accounting.as_dict().items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def combined_table(reports: Mapping[str, Report]) -> str:
    """One line per scenario: the figures and ratios side by side (for the README)."""
    lines = ["| scenario | figures | limits | ratio | lost/dup/ooo |", "|---|---|---|---|---|"]
    for name, rep in reports.items():
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in rep.results.items())
        limits = ", ".join(f"{k} {_fmt(v)}" for k, v in rep.limit.items()) or "-"
        ratios = ", ".join(f"{k} {_fmt(v)}" for k, v in rep.ratio.items()) or "-"
        a = rep.accounting
        lines.append(f"| {name} | {figures} | {limits} | {ratios} | {a.lost}/{a.duplicated}/{a.out_of_order} |")
    return "\n".join(lines)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
