"""A service exits within a bound after SIGTERM, whatever its peers and its own tasks are
doing (issue 14: an orphaned logic ignored SIGTERM for 8 minutes, stuck in asyncio's
cancel-all-tasks at exit), and tells the launcher it is ready only once it serves.

Real processes, signalled by PID; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from grpc import aio

from gim.pkg import service
from gim.pkg.pb import logic_ext_pb2, logic_ext_pb2_grpc
from gim.pkg.redis_client import free_port

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

MARGIN = 10.0  # seconds on top of the bound for a loaded machine to schedule the exit


async def spawn_with_ready_pipe(
    args: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """Start a service the way the launcher does (`--ready-fd`) and wait for its line."""
    read_fd, write_fd = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        *args, "--parent-pid", str(os.getpid()), "--ready-fd", str(write_fd), env=env, pass_fds=(write_fd,),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        line = await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60)
    if not line.startswith(b"ready "):
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
        raise AssertionError(f"not ready: {line!r}\n{output.decode()}")
    return proc, json.loads(line[6:])


async def test_logic_whose_peers_are_gone_exits_soon_after_sigterm(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # business and Redis: nothing listens there
    env = {
        **os.environ,
        "GIM_LOGIC_INT_LISTEN": "127.0.0.1:0",
        "GIM_LOGIC_EXT_LISTEN": "127.0.0.1:0",
        "GIM_LOGIC_METRICS_LISTEN": "127.0.0.1:0",
        "GIM_LOGIC_BUSINESS_INT_ADDR": nowhere,
        "GIM_LOGIC_REDIS_URL": f"redis://{nowhere}/0",
        "GIM_LOGIC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",
    }
    proc, ports = await spawn_with_ready_pipe([sys.executable, "-P", "-m", "gim.cmd.logic"], env)
    assert set(ports) == {"int", "ext", "metrics"} and all(ports.values())
    channel = aio.insecure_channel(f"127.0.0.1:{ports['ext']}")
    try:
        stub = logic_ext_pb2_grpc.LogicExtStub(channel)
        metadata = (("user_id", "1"), ("device_id", "1"), ("token", "t"))
        # calls that wait for the missing business service while the service is told to stop
        calls = [
            asyncio.ensure_future(stub.GetFriends(logic_ext_pb2.GetFriendsReq(), metadata=metadata, timeout=60))
            for _ in range(5)
        ]
        async with asyncio.timeout(30):
            await channel.channel_ready()  # the calls are on their way
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(service.SHUTDOWN_LIMIT + MARGIN):
            output, _ = await proc.communicate()
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await channel.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode()
    assert b"stop_requested" in output, text
    # stopped gracefully, or (if something hung) ended by the bound, not killed
    assert proc.returncode == 0 or (proc.returncode == 1 and "shutdown_overran" in text), text
    assert all(isinstance(r, aio.AioRpcError) for r in results), results


STUCK_SERVICE = """
import asyncio, sys
from gim.pkg import config, service

async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # a task that does not end when cancelled

class Stuck:
    async def start(self):
        self.task = asyncio.get_running_loop().create_task(stubborn(), name="stubborn")

    async def stop(self, grace=5.0):
        if sys.argv[2] == "stop-hangs":
            await asyncio.Event().wait()

service.serve("stuck", config.BaseConfig(), Stuck, service.Launch(ready_fd=int(sys.argv[1])), shutdown_limit=2.0)
"""


@pytest.mark.parametrize("how", ["stop-hangs", "task-ignores-cancel"])
async def test_the_shutdown_bound_ends_a_process_that_would_hang(how: str, tmp_path: Path) -> None:
    """Past its bound the process exits, naming what was still pending; a stop that hangs
    and a task that ignores cancellation (asyncio.run would wait for it forever) alike."""
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_SERVICE)
    read_fd, write_fd = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", str(script), str(write_fd), how, pass_fds=(write_fd,),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            assert await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60) == b"ready {}\n"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(2.0 + MARGIN):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode()
    assert proc.returncode == 1, text
    assert "shutdown_overran" in text and "stubborn" in text, text


async def test_a_second_signal_ends_the_process_at_once(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_SERVICE.replace("shutdown_limit=2.0", "shutdown_limit=3600"))
    read_fd, write_fd = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", str(script), str(write_fd), "stop-hangs", pass_fds=(write_fd,),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            assert await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60) == b"ready {}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while b"stop_requested" not in await proc.stdout.readline():
                pass
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert b"stop_forced" in output and b"signal=SIGINT" in output, output.decode()


HALF_STARTED_SERVICE = """
from gim.pkg import config, rpc, service

class HalfStarted:
    async def start(self):
        self.grpc = rpc.new_server()
        rpc.bind(self.grpc, "127.0.0.1:0")
        await self.grpc.start()
        raise OSError(98, "cannot listen on 127.0.0.1:1 (second listener)")

    async def stop(self, grace=5.0):
        await self.grpc.stop(grace)

service.serve("half", config.BaseConfig(), HalfStarted)
"""


async def test_a_start_that_fails_half_way_ends_in_one_line(tmp_path: Path) -> None:
    """What it opened is stopped while the event loop runs: no "Exception ignored in ...
    Server.__del__" or "coroutine 'AioServer.shutdown' was never awaited" at exit."""
    script = tmp_path / "half.py"
    script.write_text(HALF_STARTED_SERVICE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(60):
        output, _ = await proc.communicate()
    text = output.decode()
    assert proc.returncode == 1, text
    assert text.count("\n") == 1 and "cannot_start" in text and "second listener" in text, text
