"""`gim bench cluster` at a tiny size: logic and connect run as workers sharing their
public ports, every delivery is accounted for, and the per-worker figures add up to
what was sent and delivered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PAIRS, MESSAGES, RATE, PACED = 4, 2, 30, 0.2  # --rate: the paced phase of single and the room's pushes
SUBSCRIBERS, PUSHES = 40, 3  # 40 connections all on one of 2 workers: chance 2**-39


def test_cluster_runs_on_workers_and_counts_each_workers_share(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    gim = Path(sys.executable).parent / "gim"
    done = subprocess.run(
        [
            str(gim), "bench", "cluster", "--workers", "2", "--shards", "2", "--json", str(out),
            "--pairs", str(PAIRS), "--messages", str(MESSAGES), "--rate", str(RATE), "--paced-seconds", str(PACED),
            "--rpc-calls", "20", "--subscribers", str(SUBSCRIBERS), "--pushes", str(PUSHES),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["params"]["workers"] == 2 and doc["params"]["room"]["connect_nodes"] == 2
    r = doc["results"]
    sent = doc["accounting"]["sent"]
    assert doc["accounting"]["delivered"] == doc["accounting"]["expected"] > 0 and doc["accounting"]["lost"] == 0
    single_sent = sent - PUSHES
    assert single_sent == PAIRS * MESSAGES + int(RATE * PACED) and r["single_send_failures"] == 0
    assert r["single_logic_1_calls"] + r["single_logic_2_calls"] == single_sent
    assert r["single_connect_1_deliveries"] + r["single_connect_2_deliveries"] == single_sent
    assert r["single_connect_1_devices"] + r["single_connect_2_devices"] == PAIRS
    assert r["room_logic_1_calls"] + r["room_logic_2_calls"] == PUSHES
    assert r["room_connect_1_devices"] + r["room_connect_2_devices"] == SUBSCRIBERS
    assert min(r["room_connect_1_devices"], r["room_connect_2_devices"]) > 0, "the kernel spreads the connections"
    assert r["room_connect_1_deliveries"] + r["room_connect_2_deliveries"] == SUBSCRIBERS * PUSHES
