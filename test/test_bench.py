"""`gim bench`: the delivery accounting (bytes in, counts out) and every scenario at a tiny
size end to end against real nodes (embedded storage), checking the JSON shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from gim.bench import messages, target
from gim.bench.accounting import Accounting
from gim.bench.chat import (
    GroupParams,
    RequestIds,
    SingleParams,
    SyncParams,
    run_group,
    run_single,
    run_single_on,
    run_sync,
)
from gim.bench.cli import compare, median_report
from gim.bench.conn import ConnParams, run_conn
from gim.bench.fleet import Behaviour, Fleet
from gim.bench.report import Report
from gim.bench.room import RoomParams, run_room
from gim.bench.services import StorageOptions, credentials, deployment, storage
from gim.internal.launcher import Launcher, local_nodes
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol import client_framing
from gim.pkg.protocol.frames import encode_frame
from gim.pkg.schema import device_ack as device_ack_table
from gim.pkg.schema import user as user_table

KEYS = {"scenario", "params", "results", "limit", "ratio", "accounting", "machine"}
COUNTS = {"sent", "expected", "delivered", "lost", "duplicated", "out_of_order", "unexpected"}


def pushed_frame(seq: int, tag: int = 0) -> bytes:
    message = cx.Message(seq=seq, message_content=messages.content(tag) if tag else b"x")
    out = cx.Output(type=cx.PT_MESSAGE, data=cx.MessageSend(message=message).SerializeToString())
    return encode_frame(out.SerializeToString())


def account(stream: bytes, expected: range, split: int | None = None) -> Accounting:
    """Feed `stream` (split at `split`) through the client's framing and parser."""
    accounting = Accounting()
    accounting.expect(7, expected)
    framing, downstream = client_framing.TcpFraming(), messages.Downstream()
    parts = [stream] if split is None else [stream[:split], stream[split:]]
    for part in parts:
        for body in framing.feed(part):
            event = downstream.parse(body)
            assert isinstance(event, messages.Pushed)
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
    downstream = messages.Downstream()
    frame = pushed_frame(5, tag=42)[2:]
    first, second = downstream.parse(frame), downstream.parse(bytes(frame))
    assert first is second and isinstance(first, messages.Pushed) and (first.seq, first.tag) == (5, 42)


def test_replies_are_not_deliveries() -> None:
    body = cx.Output(type=cx.PT_HEARTBEAT, request_id=9).SerializeToString()
    assert messages.Downstream().parse(body) == messages.Reply(cx.PT_HEARTBEAT, 9, 0, "", b"")


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
    assert rep.results["logic_cpu_ms_per_send"] > 0 and rep.results["connect_cpu_ms_per_send"] >= 0
    # the whole machine's CPU holds logic's, and the load generator's, database's, ...
    assert rep.results["machine_cpu_ms_per_send"] >= rep.results["logic_cpu_ms_per_send"]
    assert rep.results["machine_busy"] > 0


async def test_group() -> None:
    rep = await run_group(OPTS, GroupParams(members=6, messages=4, senders=1))
    check(rep)
    assert rep.accounting.expected == 4 * 5 and "stored_rows_per_db" in rep.ratio


async def test_room() -> None:
    rep = await run_room(OPTS, RoomParams(subscribers=10, pushes=4, rate=50))
    check(rep)
    assert rep.accounting.delivered == 40 and "deliveries_per_socket" in rep.ratio
    assert rep.results["machine_cpu_ms_per_push"] >= rep.results["connect_cpu_ms_per_push"] >= 0


async def test_cluster_single() -> None:
    rep = await run_single_on(
        OPTS,
        SingleParams(pairs=4, messages=2, rate=20, paced_seconds=0.2, rpc_calls=20),
        connect_nodes=2,
        logic_nodes=2,
    )
    check(rep)


async def test_conn_over_two_nodes_and_two_workers() -> None:
    """Every device heartbeats at the clients' interval for the phase (here 2 per device),
    then one squeezed heartbeat each; every one is answered."""
    opts = dataclasses.replace(OPTS, clients=Behaviour(heartbeat_interval=0.5))
    params = ConnParams(devices=30, nodes=2, ws_every=3, per_worker=20, heartbeat_phase=1.0, heartbeat_spread=0.1)
    rep = await run_conn(opts, params)
    check(rep)
    assert rep.results["signed_in"] == 30 and rep.results["sign_in_failed"] == 0
    assert rep.results["sign_in_retries"] >= 0
    assert all(rep.results[f"{s}_cpu_ms_per_sign_in"] >= 0 for s in ("business", "logic", "connect"))
    assert rep.results["heartbeats"] == 60 and rep.results["heartbeats_lost"] == 0
    assert rep.results["heartbeat_rtt_p99_ms"] > 0 and rep.results["squeezed_heartbeat_rtt_p99_ms"] > 0
    assert rep.accounting.sent == 30 + 60 + 30 == rep.accounting.delivered


async def test_clients_show_and_ack_what_their_sync_answer_holds_and_heartbeat() -> None:
    """Messages stored before a device signs in come only in its sync answer (connect
    starts its pushes after them): the lean client counts them delivered and acks them,
    as a client shows them; later pushes are acked too; heartbeats run at the interval."""
    async with storage(OPTS) as store, deployment(store) as dep:
        sender, receiver = await dep.seed(2)
        creds = credentials(sender)
        before = [
            await dep.api.send_message(creds, cx.RT_USER, receiver.user_id, messages.content(t), request_id=t)
            for t in (1, 2, 3)
        ]
        fleet = Fleet(behaviour=Behaviour(heartbeat_interval=0.2))
        fleet.accounting.expect(receiver.device_id, range(1, 5))
        await fleet.open([receiver], dep.endpoints())
        await dep.api.send_message(creds, cx.RT_USER, receiver.user_id, messages.content(4), request_id=4)
        assert await fleet.wait_delivered(10)
        summary = fleet.accounting.summary()
        assert summary.ok and summary.delivered == 4 and fleet.sync_pages >= 1 and len(before) == 3
        query = sa.select(device_ack_table.c.seq).where(device_ack_table.c.device_id == receiver.device_id)
        acked = 0
        async with asyncio.timeout(10):  # acks reach the database behind Redis, within a flush interval
            while acked != 4:
                async with store.engine.connect() as conn:
                    acked = await conn.scalar(query) or 0
                await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            while len(fleet.heartbeat_rtts) < 2:
                await asyncio.sleep(0.05)
        assert fleet.heartbeat_failures == 0
        fleet.close()


def test_request_ids_are_unique_and_increasing() -> None:
    ids = RequestIds()
    drawn = [ids() for _ in range(10_000)]
    assert drawn == sorted(set(drawn)) and drawn[0] > 1_600_000_000 * 10**9


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


async def test_cli_against_running_services(tmp_path: Path) -> None:
    """`--target`: the nodes are not started, stopped or dropped by the benchmark."""
    async with storage(OPTS) as store:
        specs = local_nodes(
            database_url=store.database_url, redis_url=store.redis_url, redis_prefix=store.redis_prefix,
            extra={"GIM_MESSAGE_SHARDS": "2", "GIM_LOG_LEVEL": "warning"},
        )  # fmt: skip
        async with Launcher(specs, log_dir=tmp_path) as nodes:
            spec = ",".join([
                f"logic={nodes.addr('logic-1', 'ext')}", f"business={nodes.addr('business', 'ext')}",
                f"tcp={nodes.addr('connect-1', 'tcp')}", f"ws={nodes.addr('connect-1', 'ws')}",
            ])  # fmt: skip
            # the rest of the target (key prefix, shards) comes from the configuration, as for the services
            env = {**os.environ, "GIM_REDIS_PREFIX": store.redis_prefix, "GIM_MESSAGE_SHARDS": "2"}
            bench = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "gim"), "bench", "single", "--target", spec,
                "--mysql", store.database_url, "--redis", store.redis_url, "--pairs", "2", "--messages", "2",
                "--rate", "10", "--paced-seconds", "0.2", "--rpc-calls", "10", "--json", str(tmp_path / "s.json"),
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(90):
                stdout, stderr = await bench.communicate()
            assert bench.returncode == 0, stderr.decode()
            assert all(node.running for node in nodes.nodes.values())
            document = json.loads((tmp_path / "s.json").read_text())
            assert document["accounting"]["delivered"] == 2 * 2 + 2 and document["accounting"]["lost"] == 0
        async with store.engine.connect() as conn:  # the seeded users stay in the target's database
            assert await conn.scalar(sa.select(sa.func.count()).select_from(user_table)) == 4


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("foo=127.0.0.1:1", "is not one of"),
        ("tcp=127.0.0.1:1", "one ws= for each tcp="),
        ("logic=nope", "expected host:port"),
    ],
)
def test_a_bad_target_is_refused_with_the_reason(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        target.parse(spec, environ={})


def test_target_defaults_come_from_the_configuration() -> None:
    t = target.parse("tcp=0.0.0.0:9000,ws=127.0.0.1:9001", environ={"GIM_LOGIC_EXT_LISTEN": "0.0.0.0:7001"})
    assert (t.logic, t.tcp, t.ws) == ("127.0.0.1:7001", ("127.0.0.1:9000",), ("127.0.0.1:9001",))
    assert t.business == "127.0.0.1:50301" and t.shards == 10 and t.redis_prefix == "gim:"


def test_a_baseline_run_gives_its_figures_and_the_ratios_to_it() -> None:
    now, before = Report("group", {}), Report("group", {})
    now.results.update({"sends_per_s": 300.0, "answer_p50_ms": 4.0})
    before.results.update({"sends_per_s": 30.0, "answer_p50_ms": 28.0, "only_before": 1.0})
    compare(now, before)
    assert now.results["baseline_sends_per_s"] == 30.0 and now.ratio["sends_per_s_vs_baseline"] == 10.0
    assert now.ratio["answer_p50_ms_vs_baseline"] == round(4 / 28, 3) and "only_before_vs_baseline" not in now.ratio


def test_a_baseline_folder_without_gim_is_refused(tmp_path: Path) -> None:
    gim = Path(sys.executable).parent / "gim"
    done = subprocess.run(
        [str(gim), "bench", "group", "--baseline", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "no gim package there" in done.stderr


def test_rounds_are_compared_by_their_medians() -> None:
    reports = [Report("group", {}) for _ in range(3)]
    for rep, rate in zip(reports, (10.0, 40.0, 20.0), strict=True):
        rep.results["sends_per_s"] = rate
        rep.limit["db_rows_per_s"] = rate * 100
    merged = median_report(reports)
    assert merged.results["sends_per_s"] == 20.0 and merged.limit["db_rows_per_s"] == 2000.0
    assert reports[0].results["sends_per_s"] == 10.0, "the rounds themselves are left as they were"
