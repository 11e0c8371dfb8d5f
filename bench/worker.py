"""A load-generator process: one `Fleet`, driven by JSON lines on stdin.

    {"op": "open", "devices": [[user_id, device_id, token], ...], "endpoints": [[host, port, ws_host, ws_port, ws_url, source], ...],
     "ws_every": 10}                      -> {"signed": n, "failed": n, "start": t, "end": t}
    {"op": "heartbeat", "spread": 2.0}    -> {"rtts_ns": [...], "failed": n}
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

from gim.bench.fleet import Device, Endpoint, Fleet, LeanClient


async def _open(fleet: Fleet, cmd: dict[str, Any]) -> tuple[dict[str, Any], list[LeanClient]]:
    endpoints = [Endpoint(h, p, "", s) for h, p, _, _, _, s in cmd["endpoints"]]
    ws_endpoints = [Endpoint(h, p, url, s) for _, _, h, p, url, s in cmd["endpoints"]]
    every = int(cmd.get("ws_every") or 0)
    gate = asyncio.Semaphore(int(cmd.get("concurrency", 200)))
    reasons: Counter[str] = Counter()

    async def one(i: int, row: list[Any]) -> LeanClient | None:
        ends = ws_endpoints if every and i % every == every - 1 else endpoints
        async with gate:
            try:
                client = await fleet.connect(Device(*row), ends[i % len(ends)])
                reply = await client.signed_in
                if not reply.code:
                    return client
                reasons[f"{reply.code} {reply.message}"[:80]] += 1
            except Exception as exc:
                reasons[type(exc).__name__] += 1
            return None

    start = time.time()
    opened = await asyncio.gather(*(one(i, row) for i, row in enumerate(cmd["devices"])))
    clients = [c for c in opened if c is not None]
    failed = sum(reasons.values())
    return {
        "signed": len(clients),
        "failed": failed,
        "reasons": dict(reasons),
        "start": start,
        "end": time.time(),
    }, clients


async def _heartbeat(fleet: Fleet, clients: Sequence[LeanClient], spread: float) -> dict[str, Any]:
    try:
        rtts = await asyncio.wait_for(fleet.heartbeats(clients, spread), spread + 60)
        return {"rtts_ns": list(rtts), "failed": len(clients) - len(rtts)}
    except Exception:
        return {"rtts_ns": [], "failed": len(clients)}


async def serve() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fleet = Fleet()
    clients: list[LeanClient] = []
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["op"] == "open":
            answer, clients = await _open(fleet, cmd)
        elif cmd["op"] == "heartbeat":
            answer = await _heartbeat(fleet, clients, float(cmd["spread"]))
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
