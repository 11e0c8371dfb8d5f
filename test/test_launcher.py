"""The local-deployment launcher: nodes as child processes that listen where it says,
can be killed and restarted one by one, and are all gone after `stop()`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from gim.internal.launcher import LaunchError, Launcher, NodeSpec, local_nodes
from gim.pkg import config, redis_client


@pytest.mark.parametrize("storage", ["mysql"], indirect=True)
async def test_nodes_start_die_restart_and_stop(storage, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = local_nodes(
        database_url=storage.database_url, redis_url=storage.redis_url, redis_prefix=storage.redis_prefix,
        logic=2, connect=2, extra={"GIM_MESSAGE_SHARDS": "4"},
    )  # fmt: skip
    env = specs[0].env
    assert env["GIM_BUSINESS_LOGIC_INT_ADDR"] == ",".join(s.listen["int"] for s in specs if s.service == "logic")
    nodes = Launcher(specs, log_dir=tmp_path)
    try:
        await nodes.start()
        assert [n.name for n in nodes.nodes.values()] == ["business", "logic-1", "logic-2", "connect-1", "connect-2"]
        for node in nodes.of("connect"):
            assert node.spec.env["GIM_CONNECT_CONN_ADDR"] == node.addr("int")
            assert redis_client.port_open(*config.split_host_port(node.addr("tcp")))
        first_pid = nodes["connect-2"].pid
        assert await nodes.kill("connect-2") == -signal.SIGKILL
        assert not redis_client.port_open(*config.split_host_port(nodes.addr("connect-2", "tcp")))
        await nodes.restart("connect-2")
        assert nodes["connect-2"].pid != first_pid and nodes["connect-2"].starts == 2
        assert redis_client.port_open(*config.split_host_port(nodes.addr("connect-2", "ws")))
        assert await nodes.terminate("logic-2") == 0, "SIGTERM is a clean exit"
        exited = asyncio.ensure_future(nodes.exited())
        os.kill(nodes["connect-1"].pid, signal.SIGKILL)  # dies on its own, as far as the launcher knows
        async with asyncio.timeout(30):
            assert (await exited).name == "connect-1"
    finally:
        await nodes.stop()
    assert all(not n.running for n in nodes.nodes.values())
    assert (tmp_path / "connect-2.log").read_text(), "each node logs to <log_dir>/<name>.log"


async def test_a_node_that_cannot_start_is_reported(tmp_path: Path) -> None:
    port = redis_client.free_port()
    bad = NodeSpec("logic", "logic", {"int": f"127.0.0.1:{port}", "ext": f"127.0.0.1:{port}"},
                   {"GIM_LOGIC_MESSAGE_SHARDS": "many"})  # fmt: skip
    nodes = Launcher([bad], log_dir=tmp_path)
    with pytest.raises(LaunchError, match="logic exited with code 1"):
        await nodes.start(timeout=60)
    assert not nodes["logic"].running


async def test_a_port_in_use_is_one_clear_line_and_exit_code_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "GIM_BUSINESS_INT_LISTEN": f"127.0.0.1:{port}", "GIM_BUSINESS_EXT_LISTEN": "127.0.0.1:0"}
        business = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "gim.cmd.business", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(30):
            output, _ = await business.communicate()
    assert business.returncode == 1
    text = output.decode()
    assert "cannot_start" in text and f"cannot listen on 127.0.0.1:{port}" in text and "Traceback" not in text
