"""A load-generator process: one `Fleet`, driven by JSON lines on stdin.

    {"op": "open", "devices": [[user_id, device_id, token], ...], "endpoints": [[host, port, ws_host, ws_port, ws_url, source], ...],
     "ws_every": 10, "retry": {"attempts": 5}}
                                          -> {"signed": n, "failed": n, "reasons": {...}, "retries": n,
                                             "retry_reasons": {...}, "start": t, "end": t}
    {"op": "heartbeat", "spread": 2.0}    -> {"rtts_ns": [...], "failed": n}
    {"op": "heartbeats", "interval": 60, "seconds": 120, "first": 0, "stride": 1}
                                          -> {"rtts_ns": [...], "sent": n, "lost": n}
    {"op": "close"}                       -> {"lost_connections": n}, then the process exits

Times are wall-clock seconds, so the parent can combine several workers. `WorkerPool`
is the parent's side (`python -P -m gim.bench.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gim.bench.fleet import Behaviour, Device, Endpoint, Fleet, LeanClient, Retry, failure_reason
from gim.client.client import Timing
from gim.pkg.pb import connect_ext_pb2 as cx

# A heartbeat not answered within this is lost: the SDK then takes the connection for dead.
HEARTBEAT_TIMEOUT = Timing().heartbeat_timeout


async def _open(fleet: Fleet, cmd: dict[str, Any]) -> tuple[dict[str, Any], list[LeanClient]]:
    """Every device connected and signed in, retried as clients do (`Fleet.sign_in`);
    "failed" counts the devices that never signed in, "reasons" why their last attempt
    failed, "retries" the attempts after a device's first one."""
    endpoints = [Endpoint(h, p, "", s) for h, p, _, _, _, s in cmd["endpoints"]]
    ws_endpoints = [Endpoint(h, p, url, s) for _, _, h, p, url, s in cmd["endpoints"]]
    every = int(cmd.get("ws_every") or 0)
    gate = asyncio.Semaphore(int(cmd.get("concurrency", 200)))
    retry = Retry(**cmd.get("retry", {}))
    reasons: Counter[str] = Counter()

    async def one(i: int, row: list[Any]) -> LeanClient | None:
        ends = ws_endpoints if every and i % every == every - 1 else endpoints
        try:
            return await fleet.sign_in(Device(*row), ends, i, gate, retry)
        except Exception as exc:
            reasons[failure_reason(exc)] += 1
            return None

    start = time.time()
    opened = await asyncio.gather(*(one(i, row) for i, row in enumerate(cmd["devices"])))
    clients = [c for c in opened if c is not None]
    return {
        "signed": len(clients),
        "failed": len(opened) - len(clients),
        "reasons": dict(reasons),
        "retries": fleet.sign_in_retries,
        "retry_reasons": dict(fleet.retry_reasons),
        "start": start,
        "end": time.time(),
    }, clients


async def _heartbeat(fleet: Fleet, clients: Sequence[LeanClient], spread: float) -> dict[str, Any]:
    try:
        rtts = await asyncio.wait_for(fleet.heartbeats(clients, spread), spread + 60)
        return {"rtts_ns": list(rtts), "failed": len(clients) - len(rtts)}
    except Exception:
        return {"rtts_ns": [], "failed": len(clients)}


async def _heartbeat_phase(clients: Sequence[LeanClient], cmd: dict[str, Any]) -> dict[str, Any]:
    """Every client heartbeats once per `interval` for `seconds`, as the SDK does, at
    offsets spread evenly over the interval across all `stride` workers: this worker's
    client j takes turn `first + j * stride`. Round trips of the answered ones; a
    heartbeat unanswered within HEARTBEAT_TIMEOUT is lost."""
    interval, seconds = float(cmd["interval"]), float(cmd["seconds"])
    first, stride = int(cmd["first"]), int(cmd["stride"])
    total = max(len(clients) * stride, 1)  # this worker's clients span the whole interval
    loop = asyncio.get_running_loop()

    async def beat(client: LeanClient) -> int:
        t0 = time.perf_counter_ns()
        try:
            async with asyncio.timeout(HEARTBEAT_TIMEOUT):
                await client.request(cx.PT_HEARTBEAT)
        except Exception:
            return -1
        return time.perf_counter_ns() - t0

    offsets = [(first + j * stride) / total * interval for j in range(len(clients))]
    beats: list[asyncio.Task[int]] = []
    start = loop.time()
    for turn in range(int(-(-seconds // interval)) if interval > 0 else 0):
        for client, offset in zip(clients, offsets, strict=True):
            due = turn * interval + offset
            if due >= seconds:
                break
            if (wait := start + due - loop.time()) > 0:
                await asyncio.sleep(wait)
            beats.append(loop.create_task(beat(client)))
    if (left := start + seconds - loop.time()) > 0:
        await asyncio.sleep(left)  # the phase lasts `seconds`, whatever the last offset
    rtts = [r for r in await asyncio.gather(*beats) if r >= 0]
    return {"rtts_ns": rtts, "sent": len(beats), "lost": len(beats) - len(rtts)}


async def serve() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The conn scenario's heartbeats are its `heartbeats` phase (evenly spread, measured),
    # not the fleet's own periodic ones.
    fleet = Fleet(behaviour=Behaviour(heartbeat_interval=0.0))
    clients: list[LeanClient] = []
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["op"] == "open":
            answer, clients = await _open(fleet, cmd)
        elif cmd["op"] == "heartbeat":
            answer = await _heartbeat(fleet, clients, float(cmd["spread"]))
        elif cmd["op"] == "heartbeats":
            answer = await _heartbeat_phase(clients, cmd)
        else:
            fleet.close()
            answer = {"lost_connections": fleet.lost_connections}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if cmd["op"] == "close":
            return


class WorkerPool:
    """Load-generator child processes; every call goes to all of them and gathers answers."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processes: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> WorkerPool:
        for _ in range(self.count):
            self.processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-P",
                    "-m",
                    "gim.bench.worker",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 28,
                )  # fmt: skip
            )
        return self

    async def ask(self, commands: Sequence[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        async def one(process: asyncio.subprocess.Process, command: dict[str, Any]) -> dict[str, Any]:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(command).encode() + b"\n")
            await process.stdin.drain()
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"load-generator worker {process.pid} exited ({process.returncode})")
            return json.loads(line)  # type: ignore[no-any-return]

        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*(one(p, c) for p, c in zip(self.processes, commands, strict=True))))

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.ask([{"op": "close"}] * len(self.processes), timeout=30)
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            await process.wait()


if __name__ == "__main__":
    asyncio.run(serve())
