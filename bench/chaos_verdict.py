"""What `gim bench chaos` saw, counted (no I/O): per receiver kind and per fault.

Times are `time.monotonic()` seconds of the bench process (senders and receivers live
in it). A message is *accepted* when its send returned a seq. Per receiver kind:

- lost: accepted, never on its receiver's screen (push, sync, or the final sync);
- duplicated: shown again on the same screen (each extra copy counts);
- stuck: accepted while its receiver was connected, the receiver stayed connected for
  the whole window (`stuck_window`, 5 s) after, and it was not on the screen by then;
- out_of_order: shown after a higher seq on the same screen (arrival order);
- unexpected: on a screen but nobody sent it there (not ours, or someone else's).

Per fault: the seconds until sends succeed again (0 when none failed) and until every
message accepted from then on was pushed within `PUSH_OK` of its acceptance.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from gim.bench.report import percentile

PUSH_OK = 1.0  # seconds: a push this late after acceptance counts as "pushes not back yet"
EXAMPLES = 5  # offending messages listed per kind of problem


@dataclasses.dataclass
class Sent:
    """One message of the plan; `accepted` (monotonic) once a send returned `seq`."""

    tag: int
    sender: int  # index
    receiver: int  # index
    request_id: int
    accepted: float | None = None
    seq: int = 0
    attempts: int = 0


@dataclasses.dataclass(frozen=True)
class Attempt:
    start: float
    end: float
    ok: bool
    why: str = ""


@dataclasses.dataclass(frozen=True)
class Shown:
    """One message on a receiver's screen, in arrival order: `tag` -1 when not ours."""

    tag: int
    seq: int
    at: float
    via: str  # "push", "sync", "final" (raw clients); "sdk", "final" (SDK clients)
    conn: int  # which connection of the receiver (1, 2, ...)


class Presence:
    """When a receiver was signed in: intervals [up, down)."""

    def __init__(self) -> None:
        self.intervals: list[list[float]] = []

    @property
    def connected(self) -> bool:
        return bool(self.intervals) and math.isinf(self.intervals[-1][1])

    def up(self, at: float) -> None:
        if not self.connected:
            self.intervals.append([at, math.inf])

    def down(self, at: float) -> None:
        if self.connected:
            self.intervals[-1][1] = at

    def through(self, start: float, end: float) -> bool:
        """Signed in on one connection from `start` to `end`."""
        return any(up <= start and end <= down for up, down in self.intervals)

    @property
    def reconnects(self) -> int:
        return max(0, len(self.intervals) - 1)


@dataclasses.dataclass(frozen=True)
class FaultRun:
    name: str
    at: float  # when it was injected
    done: float  # when it was over (node or Redis ready again)
    detail: str  # what happened (exit codes, sessions killed)
    clean: bool  # the node restarted cleanly (or nothing to restart)


@dataclasses.dataclass
class KindCounts:
    receivers: int = 0
    accepted: int = 0
    shown: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    reconnects: int = 0
    push_p50_ms: float = 0.0
    push_p99_ms: float = 0.0
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def failing(self) -> int:
        return self.lost + self.duplicated + self.stuck + self.out_of_order + self.unexpected


def count_kind(
    sent: Sequence[Sent],
    receivers: Iterable[int],
    screens: dict[int, list[Shown]],
    presence: dict[int, Presence],
    stuck_window: float,
) -> KindCounts:
    """Counts for the receivers (indexes) of one kind."""
    mine = set(receivers)
    out = KindCounts(receivers=len(mine))
    by_tag = {m.tag: m for m in sent}
    first_shown: dict[int, Shown] = {}
    latencies: list[float] = []

    def example(kind: str, text: str) -> None:
        listed = out.examples.setdefault(kind, [])
        if len(listed) < EXAMPLES:
            listed.append(text)

    for r in sorted(mine):
        highest = 0
        for shown in screens.get(r, []):
            out.shown += 1
            m = by_tag.get(shown.tag)
            if m is None or m.receiver != r:
                out.unexpected += 1
                example("unexpected", f"receiver {r}: seq {shown.seq} tag {shown.tag} via {shown.via}")
                continue
            if shown.tag in first_shown:
                out.duplicated += 1
                was = first_shown[shown.tag]
                example("duplicated", f"receiver {r}: tag {m.tag} seq {shown.seq} via {was.via} then {shown.via}")
                continue
            first_shown[shown.tag] = shown
            if shown.seq < highest:
                out.out_of_order += 1
                example("out_of_order", f"receiver {r}: seq {shown.seq} (tag {m.tag}, {shown.via}) after seq {highest}")
            highest = max(highest, shown.seq)
    for m in sent:
        if m.receiver not in mine or m.accepted is None:
            continue
        out.accepted += 1
        first = first_shown.get(m.tag)
        if first is None:
            out.lost += 1
            example("lost", f"receiver {m.receiver}: tag {m.tag} (sender {m.sender}, request_id {m.request_id})")
            continue
        delay = first.at - m.accepted
        if first.via in ("push", "sdk"):
            latencies.append(delay)
        if delay > stuck_window and presence[m.receiver].through(m.accepted, m.accepted + stuck_window):
            out.stuck += 1
            example("stuck", f"receiver {m.receiver}: tag {m.tag} shown {delay:.1f} s after acceptance via {first.via}")
    out.reconnects = sum(presence[r].reconnects for r in mine if r in presence)
    out.push_p50_ms = round(percentile(latencies, 50) * 1000, 1)
    out.push_p99_ms = round(percentile(latencies, 99) * 1000, 1)
    return out


@dataclasses.dataclass(frozen=True)
class Recovery:
    name: str
    at_s: float  # since the send phase started
    failed_attempts: int
    sends_back_s: float
    late_pushes: int
    pushes_back_s: float
    detail: str
    clean: bool
    late_examples: tuple[str, ...] = ()


def recovery(
    faults: Sequence[FaultRun],
    attempts: Sequence[Attempt],
    sent: Sequence[Sent],
    first_shown_at: dict[int, tuple[float, str]],
    start: float,
    end: float,
) -> list[Recovery]:
    """For each fault, within [its injection, the next one's): how long sends failed and
    how long pushes were late. `first_shown_at`: tag -> (time, via) of its first showing."""
    out = []
    for i, fault in enumerate(faults):
        until = faults[i + 1].at if i + 1 < len(faults) else end
        window = [a for a in attempts if fault.at <= a.end < until or (a.start < fault.at <= a.end)]
        failed = [a for a in window if not a.ok]
        sends_back = 0.0
        if failed:
            last = max(a.end for a in failed)
            later = [a.end for a in attempts if a.ok and a.end >= last]
            sends_back = (min(later) if later else math.inf) - fault.at  # inf: never back
        late: list[float] = []
        examples: list[str] = []
        for m in sent:
            if m.accepted is None or not fault.at <= m.accepted < until:
                continue
            shown = first_shown_at.get(m.tag)
            pushed = shown is not None and shown[1] in ("push", "sdk")
            # late: never shown, pushed more than PUSH_OK after acceptance, or only synced
            # after acceptance (a message synced before its send was answered is not late)
            if shown is None or shown[0] - m.accepted > PUSH_OK or (not pushed and shown[0] > m.accepted):
                late.append(m.accepted)
                how = "never" if shown is None else f"via {shown[1]} after {shown[0] - m.accepted:.2f} s"
                examples.append(f"receiver {m.receiver} tag {m.tag} accepted at +{m.accepted - fault.at:.2f} s: {how}")
        pushes_back = max(late) - fault.at if late else 0.0
        out.append(
            Recovery(
                fault.name,
                round(fault.at - start, 1),
                len(failed),
                round(sends_back, 2),
                len(late),
                round(pushes_back, 2),
                fault.detail,
                fault.clean,
                tuple(examples[:3] + examples[-3:]),
            )
        )
    return out


def failure_kinds(attempts: Iterable[Attempt]) -> dict[str, int]:
    kinds: dict[str, int] = defaultdict(int)
    for a in attempts:
        if not a.ok:
            kinds[a.why] += 1
    return dict(kinds)
