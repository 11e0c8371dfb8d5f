"""Prometheus metrics: business, logic and connect as separate processes (each its own
figures), a sign-in and a send between two users, then every node's /metrics scraped over
HTTP: the counters moved by the right amounts. And each call's log lines carry its
request_id, user_id and device_id (JSON logs, as in containers)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from grpc import aio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gim.client.api import Credentials, GimApi
from gim.client.connection import TcpConnection
from gim.internal.launcher import Launcher, local_nodes
from gim.pkg import config, rpc
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2 as int_

pytestmark = pytest.mark.integration  # starts gim processes of its own

UP_TO_DATE = 2**62  # a sync from here answers nothing (the device has everything so far)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


class Scrapes:
    def __init__(self, cluster: Launcher) -> None:
        self.ports = {node.name: node.ports["metrics"] for node in cluster.nodes.values()}
        self.before: dict[str, Samples] = {}
        self.after: dict[str, Samples] = {}

    async def take(self) -> dict[str, Samples]:
        return {name: await asyncio.to_thread(scrape, port) for name, port in self.ports.items()}

    def moved(self, node: str, name: str, **labels: str) -> float:
        return value(self.after[node], name, **labels) - value(self.before[node], name, **labels)


@pytest.mark.parametrize("storage", ["mysql"], indirect=True)
async def test_every_node_counts_a_sign_in_and_a_send(storage: Any, tmp_path: Path) -> None:
    specs = local_nodes(
        database_url=storage.database_url, redis_url=storage.redis_url, redis_prefix=storage.redis_prefix,
        dev_code="0000", extra={"GIM_MESSAGE_SHARDS": "4", "GIM_LOG_FORMAT": "json"},
    )  # fmt: skip
    async with Launcher(specs, log_dir=tmp_path) as cluster:
        await cluster.wait_healthy()
        scrapes = Scrapes(cluster)
        assert all(port > 0 for port in scrapes.ports.values())
        api = GimApi(cluster.addr("logic-1", "ext"), cluster.addr("business", "ext"))
        receiver: TcpConnection | None = None
        try:
            scrapes.before = await scrapes.take()
            phones = ["1" + str(uuid.uuid4().int)[:10] for _ in range(2)]
            sender, target = [await api.sign_in(p, "0000", await api.register_device()) for p in phones]
            receiver = await TcpConnection.open(*config.split_host_port(cluster.addr("connect-1", "tcp")))
            signed_in = await receiver.sign_in(target.user_id, target.device_id, target.token)
            assert signed_in.code == 0, signed_in.message
            await receiver.sync(UP_TO_DATE)
            await api.send_message(sender, cx.RT_USER, target.user_id, b"hello", request_id=4242)
            assert (await receiver.next_message()).message_content == b"hello"
            stranger = Credentials(sender.user_id, sender.device_id, "not-the-token")
            with pytest.raises(GimError) as refused:
                await api.send_message(stranger, cx.RT_USER, target.user_id, b"no", request_id=777)
            assert refused.value.code == Code.UNAUTHORIZED
            scrapes.after = await scrapes.take()
            async with asyncio.timeout(10):  # logic counts a delivery when connect's answer is back
                while scrapes.moved("logic-1", "gim_logic_deliveries_total", outcome="delivered") < 1:
                    await asyncio.sleep(0.05)
                    scrapes.after = await scrapes.take()
        finally:
            if receiver is not None:
                await receiver.close()
            await api.close()

        handled = "grpc_server_handled_total"
        # business: two sign-ins, each claiming its device at logic
        assert scrapes.moved("business", "gim_business_sign_ins_total", outcome="ok") == 2
        assert scrapes.moved("business", handled, grpc_service="pb.UserExt", grpc_method="SignIn", grpc_code="OK") == 2
        assert scrapes.moved("business", "grpc_client_handled_total", grpc_method="ClaimDevice", grpc_code="OK") == 2
        assert scrapes.moved("business", "gim_business_token_checks_total", outcome="ok") >= 1
        assert scrapes.moved("business", "gim_business_token_checks_total", outcome="UNAUTHORIZED") == 1
        # logic: two devices, one send stored and pushed, one refused
        assert scrapes.moved("logic-1", handled, grpc_method="RegisterDevice", grpc_code="OK") == 2
        assert scrapes.moved("logic-1", handled, grpc_method="SendMessage", grpc_code="OK") == 1
        assert scrapes.moved("logic-1", handled, grpc_method="SendMessage", grpc_code="UNAUTHORIZED") == 1
        assert scrapes.moved("logic-1", "grpc_server_handling_seconds_count", grpc_method="SendMessage") == 2
        assert scrapes.moved("logic-1", "gim_logic_seq_allocation_seconds_count") == 1
        assert scrapes.moved("logic-1", "gim_logic_sends_total", receiver_type="user") == 1  # the refused one: not
        assert scrapes.moved("logic-1", "gim_logic_store_batch_messages_count") == 1
        assert scrapes.moved("logic-1", "gim_logic_store_batch_messages_sum") == 1
        assert scrapes.moved("logic-1", "gim_logic_store_transaction_seconds_count") == 1
        assert scrapes.moved("logic-1", "gim_logic_deliveries_total", outcome="delivered") == 1
        # the receiver's first sync, with nothing stored for it yet, is answered by connect
        assert scrapes.moved("logic-1", "gim_logic_sync_pages_total", has_more="false") == 0
        assert value(scrapes.after["logic-1"], "gim_logic_store_queue_rows") == 0
        assert scrapes.moved("logic-1", "gim_cache_lookups_total") > 0
        # connect: one signed-in TCP connection, one push delivered
        assert value(scrapes.after["connect-1"], "gim_connect_connections", transport="tcp", state="signed_in") == 1
        assert scrapes.moved("connect-1", "gim_connect_pushes_total", outcome="delivered") == 1
        assert scrapes.moved("connect-1", "gim_connect_sign_ins_total", result="ok") == 1
        assert scrapes.moved("connect-1", "gim_connect_sync_pages_total", source="connect") == 1
        frames = "gim_connect_frames_total"
        assert scrapes.moved("connect-1", frames, transport="tcp", direction="in") == 2  # sign-in, sync
        assert scrapes.moved("connect-1", frames, transport="tcp", direction="out") == 3  # their answers, the push
        assert scrapes.moved("connect-1", "gim_connect_bytes_total", transport="tcp", direction="out") > 3 * 2
        signed = scrapes.moved("connect-1", "grpc_client_handled_total", grpc_service="pb.LogicInt", grpc_code="OK")
        assert signed >= 1  # the sign-in (the sync was answered by connect)
        for node in scrapes.ports:
            assert value(scrapes.after[node], "process_resident_memory_bytes") > 0, node
            assert value(scrapes.after[node], "process_open_fds") > 0, node

    # the refused send's log line at logic carries the call's ids (JSON, one object a line)
    lines = [json.loads(line) for line in (tmp_path / "logic-1.log").read_text().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line.get("event") == "rpc_rejected" and line.get("request_id") == "777"]
    assert rejected, "no rpc_rejected line bound to request_id 777"
    assert (rejected[0]["user_id"], rejected[0]["device_id"]) == (str(sender.user_id), str(sender.device_id))


async def test_a_calls_log_lines_carry_its_ids_and_it_is_counted() -> None:
    """The server interceptor binds request_id, user_id and device_id from the metadata,
    or (a call between nodes) the request's own user_id and device_id, and counts the
    call by method and code."""
    seen: list[dict[str, Any]] = []

    async def handler(request: int_.SyncReq, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(structlog.contextvars.get_contextvars())
        return b""

    method = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=int_.SyncReq.FromString)
    server = rpc.new_server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Ids", {"Call": method})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        call = channel.unary_unary("/test.Ids/Call", request_serializer=int_.SyncReq.SerializeToString)
        before = REGISTRY.get_sample_value(
            "grpc_server_handled_total", {"grpc_service": "test.Ids", "grpc_method": "Call", "grpc_code": "OK"}
        )
        md = (("request_id", "5"), ("user_id", "1"), ("device_id", "2"), ("token", "t"))
        await call(int_.SyncReq(user_id=7, device_id=8), metadata=md)
        await call(int_.SyncReq(user_id=7, device_id=8))
        await call(int_.SyncReq())
        after = REGISTRY.get_sample_value(
            "grpc_server_handled_total", {"grpc_service": "test.Ids", "grpc_method": "Call", "grpc_code": "OK"}
        )
    finally:
        await channel.close()
        await server.stop(0)
    assert seen == [{"request_id": "5", "user_id": "1", "device_id": "2"}, {"user_id": "7", "device_id": "8"}, {}]
    assert (after or 0) - (before or 0) == 3
    assert structlog.contextvars.get_contextvars() == {}, "nothing stays bound after the call"
