"""The local-deployment launcher: nodes as child processes that listen where it says,
can be killed and restarted one by one, and are all gone after `stop()`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gim.internal.launcher import Launcher, LaunchError, NodeSpec, local_nodes
from gim.pkg import config, redis_client

if TYPE_CHECKING:
    from gimtest.backends import Storage


pytestmark = pytest.mark.integration  # starts gim processes or servers of its own


@pytest.mark.parametrize("storage", ["mysql"], indirect=True)
async def test_nodes_start_die_restart_and_stop(storage: Storage, tmp_path: Path) -> None:
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
    with pytest.raises(LaunchError, match=r"(?s)logic \(pid \d+\) exited with code 1; the last lines of .*many"):
        await nodes.start(timeout=60)
    assert not nodes["logic"].running


@pytest.mark.parametrize(
    ("service", "listener", "others"),
    [
        ("business", "int", ("ext",)),
        # connect binds TCP after gRPC and Redis are up: a clash there once left a gRPC
        # server to the garbage collector ("Exception ignored in ... Server.__del__")
        ("connect", "tcp", ("int", "ws")),
    ],
)
async def test_a_port_in_use_is_one_clear_line_and_exit_code_1(
    service: str, listener: str, others: tuple[str, ...]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            f"GIM_{service.upper()}_{listener.upper()}_LISTEN": f"127.0.0.1:{port}",
            **{f"GIM_{service.upper()}_{other.upper()}_LISTEN": "127.0.0.1:0" for other in others},
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", f"gim.cmd.{service}", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(30):
            output, _ = await proc.communicate()
    assert proc.returncode == 1
    text = output.decode()
    assert text.count("\n") == 1 and "cannot_start" in text, text
    assert f"cannot listen on 127.0.0.1:{port} ({service} {listener}_listen): in use by pid {os.getpid()}" in text
    assert "Traceback" not in text and "Exception ignored" not in text and "never awaited" not in text


async def test_a_listener_that_is_not_the_nodes_own_does_not_make_it_ready(tmp_path: Path) -> None:
    """Something else accepts on every port of the node: it is not started for that."""
    with socket.socket() as int_sock, socket.socket() as ext_sock:
        for sock in (int_sock, ext_sock):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        listen = {"int": f"127.0.0.1:{int_sock.getsockname()[1]}", "ext": f"127.0.0.1:{ext_sock.getsockname()[1]}"}
        env = {"GIM_BUSINESS_INT_LISTEN": listen["int"], "GIM_BUSINESS_EXT_LISTEN": listen["ext"]}
        nodes = Launcher([NodeSpec("business", "business", listen, env)], log_dir=tmp_path)
        with pytest.raises(LaunchError, match=r"(?s)business \(pid \d+\) exited with code 1.*in use by pid"):
            await nodes.start(timeout=60)
    assert not nodes["business"].running


async def test_a_node_reports_its_ports_when_ready(tmp_path: Path) -> None:
    spec = local_nodes(database_url=f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}", redis_url="redis://127.0.0.1:1/0")[0]
    assert spec.service == "business"
    nodes = Launcher([spec], log_dir=tmp_path)
    try:
        await nodes.start(timeout=60)
        wanted = {listener: config.split_host_port(addr)[1] for listener, addr in spec.listen.items()}
        ports = dict(nodes["business"].ports)
        assert ports.pop("metrics") > 0  # local_nodes set metrics_listen to port 0: the one it got
        assert ports == wanted
    finally:
        await nodes.stop()
