"""`gim bench`: the delivery accounting (bytes in, counts out) and every scenario at a tiny
size end to end against real nodes (embedded storage), checking the JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gim.bench import wire
from gim.bench.accounting import Accounting
from gim.bench.chat import GroupParams, SingleParams, SyncParams, run_group, run_single, run_single_on, run_sync
from gim.bench.conn import ConnParams, run_conn
from gim.bench.report import Report
from gim.bench.room import RoomParams, run_room
from gim.bench.services import StorageOptions
from gim.internal.connect.codec import encode_frame
from gim.pkg.pb import connect_ext_pb2 as cx

KEYS = {"scenario", "params", "results", "limit", "ratio", "accounting", "machine"}
COUNTS = {"sent", "expected", "delivered", "lost", "duplicated", "out_of_order", "unexpected"}


def pushed_frame(seq: int, tag: int = 0) -> bytes:
    message = cx.Message(seq=seq, message_content=wire.content(tag) if tag else b"x")
    out = cx.Output(type=cx.PT_MESSAGE, data=cx.MessageSend(message=message).SerializeToString())
    return encode_frame(out.SerializeToString())


def account(stream: bytes, expected: range, split: int | None = None) -> Accounting:
    """Feed `stream` (split at `split`) through the client's framing and parser."""
    accounting = Accounting()
    accounting.expect(7, expected)
    framing, downstream = wire.TcpFraming(), wire.Downstream()
    parts = [stream] if split is None else [stream[:split], stream[split:]]
    for part in parts:
        for body in framing.feed(part):
            event = downstream.parse(body)
            assert isinstance(event, wire.Pushed)
            accounting.delivered(7, event.seq)
    return accounting


def test_accounting_in_order_at_every_split() -> None:
    stream = b"".join(pushed_frame(seq, tag=seq) for seq in (1, 2, 3))
    for split in range(len(stream) + 1):
        summary = account(stream, range(1, 4), split).summary()
        assert (summary.delivered, summary.ok) == (3, True)


def test_accounting_counts_lost_duplicated_out_of_order_unexpected() -> None:
    stream = b"".join(pushed_frame(seq) for seq in (1, 3, 2, 3, 9))
    summary = account(stream, range(1, 5)).summary()
    assert (summary.lost, summary.duplicated, summary.out_of_order, summary.unexpected) == (1, 1, 1, 1)
    assert not summary.ok


def test_identical_broadcast_bodies_parse_to_the_same_event() -> None:
    downstream = wire.Downstream()
    frame = pushed_frame(5, tag=42)[2:]
    first, second = downstream.parse(frame), downstream.parse(bytes(frame))
    assert first is second and isinstance(first, wire.Pushed) and (first.seq, first.tag) == (5, 42)


def test_replies_are_not_deliveries() -> None:
    body = cx.Output(type=cx.PT_HEARTBEAT, request_id=9).SerializeToString()
    assert wire.Downstream().parse(body) == wire.Reply(cx.PT_HEARTBEAT, 9, 0, "", b"")


def check(report: Report) -> None:
    document = report.document()
    assert set(document) == KEYS
    assert set(document["accounting"]) == COUNTS
    assert report.accounting.ok, document["accounting"]
    assert report.accounting.delivered == report.accounting.expected > 0
    json.dumps(document)


OPTS = StorageOptions(shards=2)


async def test_single() -> None:
    rep = await run_single(OPTS, SingleParams(pairs=3, messages=3, rate=30, paced_seconds=0.3, rpc_calls=50))
    check(rep)
    assert rep.accounting.sent == 3 * 3 + 9 and "sends_per_rpc" in rep.ratio


async def test_group() -> None:
    rep = await run_group(OPTS, GroupParams(members=6, messages=4, senders=1))
    check(rep)
    assert rep.accounting.expected == 4 * 5 and "stored_rows_per_db" in rep.ratio


async def test_room() -> None:
    rep = await run_room(OPTS, RoomParams(subscribers=10, pushes=4, rate=50))
    check(rep)
    assert rep.accounting.delivered == 40 and "deliveries_per_socket" in rep.ratio


async def test_cluster_single() -> None:
    rep = await run_single_on(
        OPTS, SingleParams(pairs=4, messages=2, rate=20, paced_seconds=0.2, rpc_calls=20), connect_nodes=2, logic_nodes=2
    )
    check(rep)


async def test_conn_over_two_nodes_and_two_workers() -> None:
    rep = await run_conn(OPTS, ConnParams(devices=30, nodes=2, ws_every=3, per_worker=20, heartbeat_spread=0.1))
    check(rep)
    assert rep.results["signed_in"] == 30


def test_cli_sync_writes_json_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    gim = Path(sys.executable).parent / "gim"
    done = subprocess.run(
        [str(gim), "bench", "sync", "--messages", "120", "--shards", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert set(document) == KEYS
    assert document["accounting"]["delivered"] == 120 and document["accounting"]["lost"] == 0
    assert "messages_per_s" in document["results"] and "accounting lost" in done.stdout


@pytest.mark.parametrize("unused", [None])
async def test_sync_in_process(unused: None) -> None:
    check(await run_sync(OPTS, SyncParams(messages=60)))
