"""`gim bench chaos`: the counting on its own (no I/O), bad options refused, and a small
run end to end on the suite's MariaDB — 2 connect + 2 logic + business as processes, its
own Redis with AOF, raw 2021-style and SDK receivers, all five faults — which must exit 0
with zero lost, duplicated, stuck and out-of-order messages.

The run's "stuck" window is 15 s instead of the product's 5 s (the full run's default):
on a loaded 2-core CI machine a node restart alone can take several seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gim.bench.chaos_verdict import Attempt, FaultRun, Presence, Sent, Shown, count_kind, recovery

GIM = str(Path(sys.executable).parent / "gim")


def _presence(*intervals: tuple[float, float]) -> Presence:
    p = Presence()
    for up, down in intervals:
        p.up(up)
        p.down(down)
    return p


def test_counts_lost_duplicated_out_of_order_unexpected() -> None:
    sent = [Sent(tag, 0, 0, tag + 1, accepted=1.0, seq=tag) for tag in range(4)]
    screen = [Shown(0, 10, 1.1, "push", 1), Shown(2, 12, 1.2, "push", 1), Shown(1, 11, 1.3, "push", 1),
              Shown(2, 12, 1.4, "sync", 1), Shown(-1, 13, 1.5, "push", 1)]  # fmt: skip
    counts = count_kind(sent, [0], {0: screen}, {0: _presence((0.0, 100.0))}, stuck_window=5.0)
    assert (counts.lost, counts.duplicated, counts.out_of_order, counts.unexpected, counts.stuck) == (1, 1, 1, 1, 0)
    assert counts.examples["lost"] == ["receiver 0: tag 3 (sender 0, request_id 4)"]


def test_stuck_only_when_connected_for_the_whole_window() -> None:
    sent = [Sent(0, 0, 0, 1, accepted=10.0), Sent(1, 0, 1, 2, accepted=10.0), Sent(2, 0, 2, 3, accepted=10.0)]
    screens = {
        0: [Shown(0, 1, 16.0, "sync", 2)],  # connected throughout, shown 6 s later: stuck
        1: [Shown(1, 1, 16.0, "sync", 2)],  # its connection dropped 1 s after: not stuck
        2: [Shown(2, 1, 14.9, "push", 1)],  # within 5 s
    }
    presence = {0: _presence((0.0, 20.0)), 1: _presence((0.0, 11.0), (11.5, 30.0)), 2: _presence((0.0, 20.0))}
    counts = count_kind(sent, [0, 1, 2], screens, presence, stuck_window=5.0)
    assert (counts.stuck, counts.lost, counts.reconnects) == (1, 0, 1)


def test_recovery_measures_sends_and_pushes_back_after_each_fault() -> None:
    faults = [FaultRun("logic_kill", 10.0, 12.0, "", True), FaultRun("redis_flush", 20.0, 20.1, "", True)]
    attempts = [Attempt(9.9, 10.2, False, "UNAVAILABLE"), Attempt(10.3, 11.5, False, "UNAVAILABLE"),
                Attempt(11.6, 11.8, True), Attempt(20.5, 20.6, True)]  # fmt: skip
    sent = [Sent(0, 0, 0, 1, accepted=11.8), Sent(1, 0, 0, 2, accepted=12.5), Sent(2, 0, 0, 3, accepted=20.6)]
    shown = {0: (13.8, "push"), 1: (12.6, "push"), 2: (20.7, "push")}
    first, second = recovery(faults, attempts, sent, shown, start=0.0, end=30.0)
    assert (first.failed_attempts, first.sends_back_s, first.late_pushes, first.pushes_back_s) == (2, 1.8, 1, 1.8)
    assert (second.failed_attempts, second.sends_back_s, second.late_pushes) == (0, 0.0, 0)


def test_bad_options_are_refused_with_the_reason() -> None:
    done = subprocess.run([GIM, "bench", "chaos", "--faults", "connect_kill,disk_full"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "--faults: unknown disk_full" in done.stderr and "Traceback" not in done.stderr


async def test_small_chaos_run_on_mysql_exits_zero_with_nothing_lost(empty_mysql: str, tmp_path: Path) -> None:
    server = os.environ.get("GIM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")  # empty_mysql: reachable (or skip)
    out = tmp_path / "chaos.json"
    args = [
        GIM, "bench", "chaos", "--mysql", server, "--messages", "2000", "--rate", "80", "--receivers", "4",
        "--sdk-receivers", "2", "--senders", "4", "--stuck-window", "15", "--timeout", "400",
        "--json", str(out), "--logs", str(tmp_path / "logs"),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-6000:]}"
    document = json.loads(out.read_text())
    assert [f["name"] for f in document["faults"]] == [
        "connect_kill",
        "logic_kill",
        "redis_kill",
        "redis_flush",
        "mysql_kill",
    ]
    assert all(f["clean"] for f in document["faults"])
    assert "sessions killed" in document["faults"][-1]["detail"]
    assert document["results"]["accepted"] == 2000 and document["results"]["db_duplicates"] == 0
    for kind in ("raw", "sdk"):
        counts = document["kinds"][kind]
        assert counts["accepted"] > 0
        assert {k: counts[k] for k in ("lost", "duplicated", "stuck", "out_of_order", "unexpected")} == dict.fromkeys(
            ("lost", "duplicated", "stuck", "out_of_order", "unexpected"), 0
        )
    assert set(document["nodes"]["exit_codes_at_stop"].values()) == {0}
    assert document["problems"] == []
