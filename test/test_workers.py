"""`gim run --workers 2`: two logic and two connect processes share the public ports
(SO_REUSEPORT), each with its own private port; devices on different connect workers
reach each other, and when one connect worker is killed the other still serves the same
public port.

Processes are found and signalled by PID; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.exceptions import RedisError

from gim.client.api import Credentials, GimApi
from gim.client.connection import TcpConnection
from gim.pkg import db, ports, redis_client, rpc
from gim.pkg.health import check_addr
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2, connect_int_pb2_grpc, logic_int_pb2, logic_int_pb2_grpc
from gimtest.backends import mysql_database, redis_url_or
from gimtest.processes import gim_run_env

pytestmark = pytest.mark.integration  # starts gim processes of its own

GIM = str(Path(sys.executable).with_name("gim"))
START = 90.0  # seconds for gim run to print its banner
DEMO_LINE = re.compile(rb"phone (\d+)\s+user_id (\d+)\s+device_id (\d+)\s+token (\S+)")
TRIES = 40  # connections until one lands on the other worker: all on one has chance 2**-40


def _free_pair(used: set[int]) -> int:
    """A port p with p and p + 1 free and not in `used` (worker 1 and 2 of a private port)."""
    for _ in range(100):
        port = redis_client.free_port()
        if {port, port + 1} & used or port + 1 > 65535:
            continue
        try:
            ports.check_free("127.0.0.1", port + 1, "test")
        except ports.PortTaken:
            continue
        used |= {port, port + 1}
        return port
    raise AssertionError("no two consecutive free ports")


async def _storage(tmp_path: Path) -> tuple[str, str]:
    """A fresh MariaDB database (SQLite outside CI) and a Redis URL (a free port: gim run
    embeds one when the test Redis is not reachable)."""
    database = await mysql_database() or f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}"
    return database, await redis_url_or(f"redis://127.0.0.1:{redis_client.free_port()}/0")


async def _drop_prefix(redis_url: str, prefix: str) -> None:
    """The keys a run left in the shared test Redis."""
    client = redis_client.connect(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    except (RedisError, OSError):  # an embedded Redis is gone with its gim run: nothing to drop
        pass
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def gim_run_workers(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, int], bytes]]:
    """`gim run --workers 2` on free ports, until its banner; killed (by PID) at the end."""
    used: set[int] = set()
    port = {"l_int": _free_pair(used), "c_int": _free_pair(used)}
    for name in ("tcp", "ws", "l_ext", "b_int", "b_ext", "http", "http_int"):
        while (free := redis_client.free_port()) in used:
            pass
        used.add(free)
        port[name] = free
    addr = {k: f"127.0.0.1:{p}" for k, p in port.items()}
    database, redis_url = await _storage(tmp_path)
    prefix = f"gimtest:{uuid.uuid4().hex[:8]}:"
    env = gim_run_env(addr, database, redis_url, GIM_REDIS_PREFIX=prefix)
    proc = await asyncio.create_subprocess_exec(
        GIM, "run", "--workers", "2", "--var", str(tmp_path / "var"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = b""
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START):
            while len(DEMO_LINE.findall(output)) < 2:
                line = await proc.stdout.readline()
                assert line, f"gim run ended early:\n{output.decode()}"
                output += line
        yield proc, port, output
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(60):
                    await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if not database.startswith("sqlite"):
            await db.drop_database(database)
        await _drop_prefix(redis_url, prefix)


async def _conn_addr(port: int, user_id: int, device_id: int) -> str:
    """The connect node logic records for an online device ('' while offline)."""
    channel = rpc.channel(f"127.0.0.1:{port}", private=True)
    try:
        admin = logic_int_pb2_grpc.LogicAdminStub(channel)
        resp = await admin.GetUserDevices(logic_int_pb2.GetUserDevicesReq(user_id=user_id), timeout=10)
    finally:
        await channel.close()
    return next((d.conn_addr for d in resp.devices if d.device.device_id == device_id), "")


async def _signed_in(port: int, creds: Credentials) -> TcpConnection:
    conn = await TcpConnection.open("127.0.0.1", port)
    out = await conn.sign_in(creds.user_id, creds.device_id, creds.token)
    assert out.code == 0, out
    return conn


async def test_two_workers_share_the_public_ports_and_survive_a_killed_worker(tmp_path: Path) -> None:
    async with gim_run_workers(tmp_path) as (proc, port, banner):
        assert b"gim is running with 2 logic and 2 connect workers" in banner, banner.decode()
        (_, a_user, a_device, a_token), (_, b_user, b_device, b_token) = DEMO_LINE.findall(banner)
        alice = Credentials(int(a_user), int(a_device), a_token.decode())
        bob = Credentials(int(b_user), int(b_device), b_token.decode())
        connect_int = {f"127.0.0.1:{port['c_int'] + i}" for i in range(2)}
        # each logic worker serves on its own private port
        for i in range(2):
            assert await check_addr(f"127.0.0.1:{port['l_int'] + i}") == "SERVING"

        a_conn = await _signed_in(port["tcp"], alice)
        a_node = await _conn_addr(port["l_int"], alice.user_id, alice.device_id)
        assert a_node in connect_int
        # bob connects again (a new source port each time: a new hash) until he lands on the other worker
        b_conn, b_node = None, a_node
        for _ in range(TRIES):
            if b_conn is not None:
                await b_conn.close()
            b_conn = await _signed_in(port["tcp"], bob)
            b_node = await _conn_addr(port["l_int"] + 1, bob.user_id, bob.device_id)
            if b_node != a_node:
                break
        assert b_conn is not None and b_node in connect_int - {a_node}, "every connection landed on one worker"

        api = GimApi(f"127.0.0.1:{port['l_ext']}", f"127.0.0.1:{port['b_ext']}")
        try:
            await api.send_message(alice, cx.RT_USER, bob.user_id, b"across workers", request_id=1)
            assert (await b_conn.next_message()).message_content == b"across workers"

            # bob's worker dies: the other one serves the same public port alone
            b_pid = ports.listener_pid(int(b_node.rsplit(":", 1)[1]))
            assert b_pid is not None
            os.kill(b_pid, signal.SIGKILL)
            async with asyncio.timeout(10):
                await b_conn.closed.wait()  # the connection ends with its worker
            await b_conn.close()
            b_conn = await _signed_in(port["tcp"], bob)
            assert await _conn_addr(port["l_int"], bob.user_id, bob.device_id) == a_node
            await api.send_message(alice, cx.RT_USER, bob.user_id, b"after the kill", request_id=2)
            assert (await b_conn.next_message()).message_content == b"after the kill"
            assert (await a_conn.request(cx.PT_HEARTBEAT)).code == 0  # alice's worker never noticed
            assert proc.returncode is None, "gim run keeps serving with the other worker"
        finally:
            await api.close()
            await a_conn.close()
            await b_conn.close()
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, _ = await proc.communicate()
        text = (banner + rest).decode()
        assert proc.returncode == 0, text
        assert re.search(rf"gim: connect-\d \(pid {b_pid}\) exited with code -9; connect-\d still serving", text), text


async def _connections(addr: str) -> int:
    channel = rpc.channel(addr, private=True)
    try:
        stub = connect_int_pb2_grpc.ConnectIntStub(channel)
        return int((await stub.GetStats(connect_int_pb2.GetStatsReq(), timeout=10)).connections)
    finally:
        await channel.close()


async def test_gim_connect_workers_alone_spread_connections_over_one_port(tmp_path: Path) -> None:
    """`gim connect --workers 2`: both workers accept on the one public port (the kernel
    spreads connections), each answers on its own private port; SIGTERM stops them all."""
    redis_url = await redis_url_or(f"redis://127.0.0.1:{redis_client.free_port()}/0")  # no database: connect has none
    parts = urlsplit(redis_url)
    if not redis_client.port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        pytest.skip("no Redis reachable (GIM_TEST_REDIS_URL): gim connect needs one")
    used: set[int] = set()
    c_int, tcp = _free_pair(used), redis_client.free_port()
    prefix = f"gimtest:{uuid.uuid4().hex[:8]}:"
    env = dict(
        os.environ,
        GIM_REDIS_URL=redis_url,
        GIM_REDIS_PREFIX=prefix,
        GIM_CONNECT_TCP_LISTEN=f"127.0.0.1:{tcp}",
        GIM_CONNECT_WS_LISTEN="127.0.0.1:0",
        GIM_CONNECT_INT_LISTEN=f"127.0.0.1:{c_int}",
        GIM_CONNECT_METRICS_LISTEN="",
        GIM_LOG_LEVEL="warning",
    )
    proc = await asyncio.create_subprocess_exec(
        GIM, "connect", "--workers", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    private = [f"127.0.0.1:{c_int + i}" for i in range(2)]
    conns: list[TcpConnection] = []
    try:
        async with asyncio.timeout(START):
            while [await check_addr(addr, timeout=1) for addr in private] != ["SERVING", "SERVING"]:
                assert proc.returncode is None, "gim connect --workers 2 exited"
                await asyncio.sleep(0.1)  # no event says "the workers listen": poll, bounded
        conns = [await TcpConnection.open("127.0.0.1", tcp) for _ in range(TRIES)]
        async with asyncio.timeout(10):  # each worker counts a connection once it has accepted it
            while sum(counts := [await _connections(addr) for addr in private]) < TRIES:
                await asyncio.sleep(0.05)
        assert sum(counts) == TRIES and min(counts) > 0, counts
    finally:
        for conn in conns:
            await conn.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await proc.wait()
        await _drop_prefix(redis_url, prefix)
    assert code == 0
    for addr in private:
        assert not redis_client.port_open("127.0.0.1", int(addr.rsplit(":", 1)[1])), f"{addr} still listens"
