"""`gim run` (what `make run` starts) as a newcomer uses it: three processes on the
embedded default, endpoints and demo users printed, Ctrl-C stops everything cleanly; and
as a good citizen (issue 14): alone on its folder and ports, and none of its processes
outlive it, however it ends.

Processes are found and signalled by PID; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gim.client.connection import TcpConnection
from gim.pkg import service
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.redis_client import free_port
from gimtest.processes import RUN_LISTENERS, gim_run_env

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

DEMO_LINE = re.compile(rb"phone (\d+)\s+user_id (\d+)\s+device_id (\d+)\s+token (\S+)")
GIM = str(Path(sys.executable).with_name("gim"))
START = 90.0  # seconds for gim run to print its banner
GONE = service.SHUTDOWN_LIMIT + 30.0  # seconds for its processes to be gone after it ends


def gim_env(tmp_path: Path, ports: dict[str, int], log_level: str = "warning") -> dict[str, str]:
    addr = {k: f"127.0.0.1:{p}" for k, p in ports.items()}
    database, redis_url = f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}", f"redis://{addr['redis']}/0"
    return gim_run_env(addr, database, redis_url, log_level)


@dataclasses.dataclass
class GimRun:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    var: Path
    output: bytes = b""

    @property
    def demo(self) -> list[tuple[bytes, ...]]:
        return DEMO_LINE.findall(self.output)

    async def until_banner(self) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(START):
            while len(self.demo) < 2:
                line = await self.proc.stdout.readline()
                assert line, f"gim run ended early:\n{self.output.decode()}"
                self.output += line

    async def ended(self, timeout: float = GONE) -> int:
        async with asyncio.timeout(timeout):
            rest, _ = await self.proc.communicate()
        self.output += rest
        assert self.proc.returncode is not None
        return self.proc.returncode


async def start_gim_run(
    tmp_path: Path, ports: dict[str, int] | None = None, var: Path | None = None, log_level: str = "warning"
) -> GimRun:
    ports = ports or {k: free_port() for k in (*RUN_LISTENERS, "redis")}
    var = var or tmp_path / "var"
    proc = await asyncio.create_subprocess_exec(
        GIM, "run", "--var", str(var),
        env=gim_env(tmp_path, ports, log_level), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    return GimRun(proc, ports, var)


@contextlib.asynccontextmanager
async def gim_run(tmp_path: Path, log_level: str = "warning") -> AsyncIterator[GimRun]:
    """A `gim run` that has printed its banner; killed (with what it started) at the end."""
    run = await start_gim_run(tmp_path, log_level=log_level)
    children: list[int] = []
    try:
        await run.until_banner()
        children = children_of(run.proc.pid)
        yield run
    finally:
        if run.proc.returncode is None:
            run.proc.kill()
            await run.proc.wait()
        for pid in children:  # only if the test failed: the tests below check they are gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is `pid` (from /proc)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(proc.name))
    return out


def command_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def until_gone(pids: list[int]) -> None:
    try:
        async with asyncio.timeout(GONE):
            while any(alive(pid) for pid in pids):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"still running: {[(p, command_of(p)) for p in pids if alive(p)]}") from None


def the_services_and_redis(pids: list[int]) -> dict[str, int]:
    """{"business": pid, "logic": ..., "connect": ..., "redis": ...} among `pids`."""
    named = {}
    for pid in pids:
        command = command_of(pid)
        for name in ("business", "logic", "connect"):
            if f"gim.cmd.{name}" in command:
                named[name] = pid
        if "redis-server" in command:
            named["redis"] = pid
    return named


async def signs_in(run: GimRun) -> bool:
    (_, user_id, device_id, token), _ = run.demo
    conn = await TcpConnection.open("127.0.0.1", run.ports["tcp"])
    try:
        out = await conn.sign_in(int(user_id), int(device_id), token.decode())
        return out.code == 0 and (await conn.request(cx.PT_HEARTBEAT)).code == 0
    finally:
        await conn.close()


async def test_gim_run_serves_and_stops_cleanly(tmp_path: Path) -> None:
    async with gim_run(tmp_path) as run:
        addr = {k: f"127.0.0.1:{p}" for k, p in run.ports.items()}
        assert f"TCP long connections   {addr['tcp']}".encode() in run.output
        assert f"ws://{addr['ws']}/ws".encode() in run.output
        assert await signs_in(run)
        assert (run.var / "redis").is_dir(), "the embedded Redis keeps its data under --var"
        assert (run.var / "log" / "logic.log").is_file(), "the services log under --var"
        run.proc.send_signal(signal.SIGINT)
        assert await run.ended() == 0, run.output.decode()
    assert b"gim: stopped" in run.output


async def test_sighup_stops_every_process_it_started(tmp_path: Path) -> None:
    """A closed terminal sends SIGHUP: a stop like Ctrl-C, nothing left behind."""
    async with gim_run(tmp_path) as run:
        children = children_of(run.proc.pid)
        assert set(the_services_and_redis(children)) == {"business", "logic", "connect", "redis"}
        run.proc.send_signal(signal.SIGHUP)
        assert await run.ended() == 0, run.output.decode()
        assert b"gim: stopped" in run.output
        await until_gone(children)


async def test_a_second_gim_run_is_refused_and_sigkill_leaves_nothing_behind(tmp_path: Path) -> None:
    async with gim_run(tmp_path) as first:
        children = children_of(first.proc.pid)
        services = the_services_and_redis(children)
        assert set(services) == {"business", "logic", "connect", "redis"}

        # same folder (same ports): refused by the folder's lock, before anything else
        second = await start_gim_run(tmp_path, first.ports, first.var)
        assert await second.ended(60) != 0
        text = second.output.decode()
        assert text.strip() == f"gim: gim is already running in {first.var}/ (pid {first.proc.pid}); " \
            f"stop it first (Ctrl-C in its terminal, or kill {first.proc.pid})", text  # fmt: skip

        # another folder, same ports: the first port in the way, and who holds it
        third = await start_gim_run(tmp_path, first.ports, tmp_path / "other-var")
        assert await third.ended(60) != 0
        text = third.output.decode()
        assert len(text.strip().splitlines()) == 1 and "gim is running" not in text, text
        assert f"gim: cannot listen on 127.0.0.1:{first.ports['b_int']} (business int_listen): in use by " \
            f"pid {services['business']} (gim business, started by gim run pid {first.proc.pid})" in text, text  # fmt: skip
        assert not (tmp_path / "other-var" / "redis").exists(), "nothing was started"

        # the first one did not notice
        assert first.proc.returncode is None and all(alive(pid) for pid in children)
        assert await signs_in(first)

        first.proc.kill()
        assert await first.ended() == -signal.SIGKILL
        await until_gone(children)

    # its lock went with it, its ports are free: the same folder starts again
    again = await start_gim_run(tmp_path, first.ports, first.var)
    try:
        await again.until_banner()
        again.proc.send_signal(signal.SIGINT)
        assert await again.ended() == 0, again.output.decode()
    finally:
        if again.proc.returncode is None:
            again.proc.kill()
            await again.proc.wait()


async def test_a_service_that_dies_stops_gim_run_with_its_log(tmp_path: Path) -> None:
    async with gim_run(tmp_path, log_level="info") as run:
        children = children_of(run.proc.pid)
        logic = the_services_and_redis(children)["logic"]
        os.kill(logic, signal.SIGKILL)
        assert await run.ended() == 1, run.output.decode()
        text = run.output.decode()
        assert f"gim: logic (pid {logic}) exited with code -9; stopping the other services" in text, text
        assert f"the last lines of {run.var / 'log' / 'logic.log'}:" in text, text
        assert "logic_started" in text.split("the last lines of", 1)[1], text
        assert "gim: stopped" in text
        await until_gone(children)


async def test_a_port_held_by_another_program_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {k: free_port() for k in (*RUN_LISTENERS, "redis")}
        ports["tcp"] = taken.getsockname()[1]
        run = await start_gim_run(tmp_path, ports)
        assert await run.ended(60) == 1
    text = run.output.decode()
    assert text.count("\n") == 1, text
    assert text.startswith(
        f"gim: cannot listen on 127.0.0.1:{ports['tcp']} (connect tcp_listen): in use by pid {os.getpid()}"
    )
    assert "Exception ignored" not in text and "Traceback" not in text and "never awaited" not in text
    assert not (tmp_path / "var" / "redis").exists(), "nothing was started"


async def test_two_services_on_one_port_is_one_line(tmp_path: Path) -> None:
    ports = {k: free_port() for k in (*RUN_LISTENERS, "redis")}
    ports["l_ext"] = ports["ws"]
    run = await start_gim_run(tmp_path, ports)
    assert await run.ended(60) == 1
    text = run.output.decode()
    assert (
        text == f"gim: logic ext_listen and connect ws_listen both listen on port {ports['ws']}; give each its own\n"
    ), text
