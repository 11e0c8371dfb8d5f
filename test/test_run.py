"""`gim run` (what `make run` starts) as a newcomer uses it: three processes on the
embedded default, endpoints and demo users printed, Ctrl-C stops everything cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from gim.client.connection import TcpConnection
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.redis_client import free_port

DEMO_LINE = re.compile(rb"phone (\d+)\s+user_id (\d+)\s+device_id (\d+)\s+token (\S+)")


async def test_gim_run_serves_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {k: free_port() for k in ("tcp", "ws", "c_int", "l_int", "l_ext", "b_int", "b_ext", "redis")}
    addr = {k: f"127.0.0.1:{p}" for k, p in ports.items()}
    env = dict(
        os.environ,
        GIM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",
        GIM_REDIS_URL=f"redis://{addr['redis']}/0",
        GIM_CONNECT_TCP_LISTEN=addr["tcp"],
        GIM_CONNECT_WS_LISTEN=addr["ws"],
        GIM_CONNECT_INT_LISTEN=addr["c_int"],
        GIM_LOGIC_INT_LISTEN=addr["l_int"],
        GIM_LOGIC_EXT_LISTEN=addr["l_ext"],
        GIM_BUSINESS_INT_LISTEN=addr["b_int"],
        GIM_BUSINESS_EXT_LISTEN=addr["b_ext"],
        GIM_LOGIC_INT_ADDR=addr["l_int"],
        GIM_BUSINESS_INT_ADDR=addr["b_int"],
        GIM_LOG_LEVEL="warning",
    )
    gim = Path(sys.executable).with_name("gim")
    proc = await asyncio.create_subprocess_exec(
        str(gim), "run", "--var", str(tmp_path / "var"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(90):
            while len(DEMO_LINE.findall(output)) < 2:
                line = await proc.stdout.readline()
                assert line, f"gim run ended early:\n{output.decode()}"
                output += line
        assert f"TCP long connections   {addr['tcp']}".encode() in output
        assert f"ws://{addr['ws']}/ws".encode() in output
        (_, user_id, device_id, token), _ = DEMO_LINE.findall(output)
        conn = await TcpConnection.open("127.0.0.1", ports["tcp"])
        try:
            out = await conn.sign_in(int(user_id), int(device_id), token.decode())
            assert out.code == 0, out.message
            assert (await conn.request(cx.PT_HEARTBEAT)).code == 0
        finally:
            await conn.close()
        assert (tmp_path / "var" / "redis").is_dir(), "the embedded Redis keeps its data under --var"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, _ = await proc.communicate()
    output += rest
    assert proc.returncode == 0, output.decode()
    assert b"gim: stopped" in output
