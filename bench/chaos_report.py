"""The outcome of `gim bench chaos`: per receiver kind, per fault, and what failed."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gim.bench.accounting import Summary
from gim.bench.chaos_verdict import KindCounts, Recovery
from gim.bench.report import Report

SENDS_BACK_WITHIN = 3.0  # seconds (issue 11: sends back within 3 s of each fault)
KIND_COLUMNS = ("receivers", "accepted", "shown", "lost", "duplicated", "stuck", "out_of_order", "unexpected",
                "reconnects", "push_p50_ms", "push_p99_ms")  # fmt: skip
FAULT_COLUMNS = ("name", "at_s", "failed_attempts", "sends_back_s", "late_pushes", "pushes_back_s", "clean", "detail")


@dataclasses.dataclass
class ChaosReport(Report):
    kinds: dict[str, KindCounts] = dataclasses.field(default_factory=dict)
    recoveries: list[Recovery] = dataclasses.field(default_factory=list)
    failure_kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    db_examples: list[str] = dataclasses.field(default_factory=list)
    nodes: dict[str, Any] = dataclasses.field(default_factory=dict)
    send_phase: tuple[float, float] = (0.0, 0.0)

    def summary(self, sent: int) -> Summary:
        k = self.kinds.values()
        return Summary(
            sent=sent,
            expected=sum(c.accepted for c in k),
            delivered=sum(c.shown for c in k),
            lost=sum(c.lost for c in k),
            duplicated=sum(c.duplicated for c in k) + int(self.results.get("db_duplicates", 0)),
            out_of_order=sum(c.out_of_order for c in k),
            unexpected=sum(c.unexpected for c in k),
        )

    def problems(self) -> list[str]:
        """Why the run failed (empty: it passed)."""
        out = []
        for kind, c in self.kinds.items():
            for what in ("lost", "duplicated", "stuck", "out_of_order", "unexpected"):
                if getattr(c, what):
                    shown = "; ".join(c.examples.get(what, []))
                    out.append(f"{kind} receivers: {getattr(c, what)} {what.replace('_', ' ')} (first: {shown})")
        if self.results.get("db_duplicates"):
            out.append(f"{self.results['db_duplicates']:g} messages stored twice: {'; '.join(self.db_examples)}")
        if self.results.get("never_accepted"):
            out.append(f"{self.results['never_accepted']:g} sends never accepted (gave up retrying)")
        if self.nodes.get("died_unexpectedly"):
            out.append(f"nodes died on their own: {', '.join(self.nodes['died_unexpectedly'])}")
        unclean = [f"{r.name}: {r.detail}" for r in self.recoveries if not r.clean]
        if unclean:
            out.append(f"not restarted cleanly: {'; '.join(unclean)}")
        bad_exits = {n: c for n, c in self.nodes.get("exit_codes_at_stop", {}).items() if c != 0}
        if bad_exits:
            out.append(f"nodes not stopped cleanly (exit codes): {bad_exits}")
        return out

    def warnings(self) -> list[str]:
        """Worth reporting, not a failure of the run by itself."""
        slow = [f"{r.name} {r.sends_back_s:g} s" for r in self.recoveries if r.sends_back_s > SENDS_BACK_WITHIN]
        return [f"sends back later than {SENDS_BACK_WITHIN:g} s after: {', '.join(slow)}"] if slow else []

    def document(self) -> dict[str, Any]:
        doc = super().document()
        doc["kinds"] = {k: dataclasses.asdict(c) for k, c in self.kinds.items()}
        doc["faults"] = [
            {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in dataclasses.asdict(r).items()}
            for r in self.recoveries
        ]  # null: sends never came back
        doc["failure_kinds"] = self.failure_kinds
        doc["nodes"] = self.nodes
        doc["problems"] = self.problems()
        doc["warnings"] = self.warnings()
        return doc

    def table(self) -> str:
        head = [("scenario", self.scenario), *((f"param {k}", str(v)) for k, v in self.params.items())]
        head += [(k, f"{v:g}") for k, v in self.results.items() if not k.startswith(tuple(self.kinds))]
        head += [(f"send failure {why}", str(n)) for why, n in sorted(self.failure_kinds.items(), key=lambda x: -x[1])]
        head.append(("nodes restarted cleanly", "yes" if self.nodes.get("restarted_cleanly") else "NO"))
        head.append(("exit codes at stop", str(self.nodes.get("exit_codes_at_stop", {}))))
        width = max(len(k) for k, _ in head)
        lines = [f"  {k:<{width}}  {v}" for k, v in head]
        kinds = [["kind", *KIND_COLUMNS]] + [
            [name, *(_cell(getattr(c, col)) for col in KIND_COLUMNS)] for name, c in self.kinds.items()
        ]
        faults = [list(FAULT_COLUMNS)] + [[_cell(getattr(r, col)) for col in FAULT_COLUMNS] for r in self.recoveries]
        return "\n".join([*lines, "", *_columns(kinds), "", *_columns(faults)])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]
