"""The connect process: TCP and WebSocket long connections, and ConnectInt."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from grpc import aio
from redis.exceptions import RedisError
from websockets.asyncio.server import Server as WsServer

from gim.internal.connect import tcp, ws
from gim.internal.connect.api import ConnectIntServicer
from gim.internal.connect.broadcast import BroadcastSubscriber
from gim.internal.connect.context import ConnectContext
from gim.internal.connect.registry import Registry
from gim.internal.connect.sockets import Listener
from gim.pkg import health, log, metrics, nodes, redis_client, rpc
from gim.pkg.config import ConnectConfig, split_host_port
from gim.pkg.pb import connect_int_pb2_grpc, logic_int_pb2, logic_int_pb2_grpc
from gim.pkg.security import Security

_log = log.get("connect")

# seconds stop() takes at most, every wait included: under the process's shutdown limit
# (service.SHUTDOWN_LIMIT), so a node with many connections still ends by itself
STOP_BUDGET = 10.0
# of which ServerStop keeps this much (at most rpc_timeout) whatever the waits before it
# took: without it, the node's devices stay online at a dead address until they time out
SERVER_STOP_RESERVE = 3.0


class ConnectServer:
    """Built from its dependencies; `start()` listens, `stop()` shuts down gracefully."""

    def __init__(self, config: ConnectConfig, logic_channel: aio.Channel) -> None:
        self.config = config
        self._logic_channel = logic_channel
        self.registry = Registry()
        self.security = Security.from_config(config)
        self._grpc = rpc.new_server(config.grpc_status, self.security.server_interceptors("int"))
        connect_int_pb2_grpc.add_ConnectIntServicer_to_server(ConnectIntServicer(self.registry), self._grpc)
        self.health = health.NodeHealth(drain_seconds=config.drain_seconds)
        self.health.serve(self._grpc, ["pb.ConnectInt"])
        _observe(self.registry)
        self.context: ConnectContext | None = None
        self._tcp: asyncio.Server | Listener | None = None
        self._ws: WsServer | None = None
        self.tcp_port = self.ws_port = self.int_port = 0
        self.broadcasts: BroadcastSubscriber | None = None
        self.stopped = False
        self._restore_handler: Callable[[], None] = lambda: None
        self._chores: list[asyncio.Task[None]] = []
        self._redis: aioredis.Redis | None = None

    @classmethod
    def from_config(cls, config: ConnectConfig) -> ConnectServer:
        return cls(config, rpc.channel(config.logic_int_addr, outbound=Security.from_config(config).outbound))

    async def start(self) -> None:
        self.int_port = rpc.bind(self._grpc, self.config.int_listen, self.security.server_credentials("int"))
        host, _ = split_host_port(self.config.int_listen, "int_listen")
        conn_addr = self.config.conn_addr or f"{host}:{self.int_port}"
        self.context = ConnectContext(
            config=self.config,
            logic=logic_int_pb2_grpc.LogicIntStub(self._logic_channel),
            sync_raw=self._logic_channel.unary_unary(
                "/pb.LogicInt/Sync", request_serializer=logic_int_pb2.SyncReq.SerializeToString
            ),
            registry=self.registry,
            conn_addr=conn_addr,
        )
        await self._grpc.start()
        self._redis = redis_client.connect(self.config.redis_url)
        await nodes.announce(self._redis, self.config.redis_prefix, conn_addr)  # before any sign-in
        self.broadcasts = BroadcastSubscriber(
            self.config.redis_url, self.config.redis_prefix, self.registry, f"gim-connect@{conn_addr}"
        )
        await self.broadcasts.start(timeout=self.config.rpc_timeout)
        self.health.probe = health.redis_probe(self._redis)  # without Redis logic declares the node dead
        tcp_host, tcp_port = split_host_port(self.config.tcp_listen, "tcp_listen")
        self._tcp = await tcp.serve(self.context, tcp_host, tcp_port, self.security.ssl_context("tcp"))
        self.tcp_port = self._tcp.sockets[0].getsockname()[1]
        ws_host, ws_port = split_host_port(self.config.ws_listen, "ws_listen")
        self._ws = await ws.serve(self.context, ws_host, ws_port, self.security.ssl_context("ws"))
        self.ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        _deepen_backlog([*self._tcp.sockets, *self._ws.sockets])
        self._install_accept_guard()
        loop = asyncio.get_running_loop()
        self._chores = [
            loop.create_task(self._evict_idle()),
            loop.create_task(self._log_stats()),
            loop.create_task(nodes.keep_alive(self._redis, self.config.redis_prefix, conn_addr, self.reaped)),
        ]
        await self.health.start()
        _log.info(
            "connect_started",
            tcp_port=self.tcp_port,
            ws_port=self.ws_port,
            int_port=self.int_port,
            conn_addr=conn_addr,
            tls=sorted(self.security.tls),
        )

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for background work in flight: packets, acks, offline calls, closes."""
        while busy := self._background():
            done, _ = await asyncio.wait(busy, timeout=timeout)
            if not done:
                raise TimeoutError("connect background tasks did not finish")
            await asyncio.sleep(0)  # the callbacks of what they answered (an ack's next one)

    def _background(self) -> set[asyncio.Task[Any]]:
        """The node's work in flight: its tasks, and the workers of the merged ack calls
        (an ack has no task of its own)."""
        assert self.context is not None
        return self.context.tasks | self.context.acks.workers

    def stats(self) -> dict[str, int]:
        """Live connections (all, signed in), rooms with local members, room memberships."""
        return self.registry.stats()

    def _install_accept_guard(self) -> None:
        """Log "out of file descriptors on accept" as one line a second, not a traceback each.

        On EMFILE asyncio's selector loop pauses the listening socket for a second, but
        (CPython 3.11-3.13) it keeps trying the rest of its accept loop: up to `backlog`
        failed accepts, each reported with a traceback through the loop's exception
        handler. This handler keeps those reports to one log line a second (with a
        count) and passes every other report on.
        """
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        state = {"last": 0.0, "count": 0}

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") != "socket.accept() out of system resource":
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)
                return
            state["count"] += 1
            if loop.time() - state["last"] >= 1.0:
                _log.warning(
                    "accept_failed",
                    error=str(context.get("exception")),
                    failures=state["count"],
                    connections=len(self.registry.connections),
                )
                state["last"], state["count"] = loop.time(), 0

        loop.set_exception_handler(handler)
        self._restore_handler = lambda: loop.set_exception_handler(previous)

    async def _log_stats(self) -> None:
        last: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.config.stats_interval)
            if (current := self.stats()) != last:
                _log.info("conn_stats", **current)
                last = current

    def reaped(self) -> None:
        """Logic declared this node dead (it could not reach Redis for a long while) and
        marked its devices offline: every connection is closed, so that its client signs
        in again (on any node) and is online, with its pushes, once more."""
        sessions = [s for s in self.registry.connections if s.signed_in]
        _log.error(
            "node_was_declared_dead", conn_addr=self.context.conn_addr if self.context else "", closing=len(sessions)
        )
        for session in sessions:
            session.close("this node was declared dead while it could not reach Redis: sign in again")

    async def _evict_idle(self) -> None:
        """Close connections that have sent nothing for the idle timeout."""
        idle = self.config.idle_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(idle / 4, 30.0))
            cutoff = loop.time() - idle
            for session in [s for s in self.registry.connections if s.last_active < cutoff]:
                _log.info("conn_evicted", conn_id=session.conn_id, device_id=session.device_id)
                metrics.CONNECT_EVICTIONS.inc()
                session.close("idle timeout")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting and signing in, close every session, then tell logic.

        ServerStop goes last so that a sign-in racing with the shutdown cannot leave a
        device online here: sign-ins already at logic are waited for (bounded), later
        ones are refused, and ServerStop marks every device of this node offline.

        Every wait is bounded, and all of them together by STOP_BUDGET (under the
        process's own shutdown limit), the waits before ServerStop so that it keeps
        SERVER_STOP_RESERVE: a WebSocket still closing then is aborted, and background
        work still running (calls to logic) is left to be cancelled.
        """
        if self.stopped or self.context is None:
            return
        self.stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET
        phases: dict[str, float] = {}

        reserve = min(self.config.rpc_timeout, SERVER_STOP_RESERVE)

        def left(bound: float, keep: float = 0.0) -> float:
            return max(0.0, min(bound, deadline - keep - loop.time()))

        def phase(name: str, began: float) -> float:
            now = loop.time()
            phases[name] = round(now - began, 3)
            return now

        began = loop.time()
        # NOT_SERVING, still serving everything for drain_seconds: at most 5 s (config), so
        # within what the reserve leaves; the wait for sign-ins gets the rest of that
        await self.health.drain()
        self.context.stopping = True
        for chore in self._chores:
            chore.cancel()
        if self._tcp is not None:
            self._tcp.close()
        if self._ws is not None:
            self._ws.close(close_connections=False)
        began = phase("drain", began)
        await self.context.sign_ins_done(left(self.config.rpc_timeout + 1.0, reserve))
        began = phase("sign_ins", began)
        sessions = list(self.registry.connections)
        for session in sessions:
            session.close("server shutting down")
        began = phase("close", began)
        _log.info("connect_stopping", closed=len(sessions))
        try:
            await rpc.call(
                self.context.logic.ServerStop,
                logic_int_pb2.ServerStopReq(conn_addr=self.context.conn_addr),
                left(self.config.rpc_timeout),
            )
        except Exception as exc:  # logic may already be gone; devices then time out
            _log.warning("server_stop_failed", error=str(exc) or type(exc).__name__)
        began = phase("server_stop", began)
        if self._redis is not None:
            try:
                async with asyncio.timeout(left(self.config.rpc_timeout)):
                    await nodes.leave(self._redis, self.config.redis_prefix, self.context.conn_addr)
            except (RedisError, TimeoutError) as exc:  # the key expires by itself
                _log.warning("node_leave_failed", error=str(exc) or type(exc).__name__)
            await self._redis.aclose()
        if self.broadcasts is not None:
            await self.broadcasts.stop()
        began = phase("leave", began)
        if self._ws is not None:
            await self._ws_closed(left(self.config.close_timeout))
        began = phase("ws_closed", began)
        await self._grpc.stop(left(grace))
        while (busy := self._background()) and left(grace) > 0:
            await asyncio.wait(busy, timeout=left(grace))
            await asyncio.sleep(0)  # the callbacks of what they answered (an ack's next one)
        phase("tasks", began)
        await self._logic_channel.close()
        self._restore_handler()
        _log.info("connect_stopped", seconds=phases, tasks_left=len(self.context.tasks))

    async def _ws_closed(self, timeout: float) -> None:
        """Wait (bounded) for the WebSocket connections' closing handshakes and handlers;
        then abort those still open."""
        assert self._ws is not None
        try:
            async with asyncio.timeout(timeout):
                await self._ws.wait_closed()
        except TimeoutError:
            still = list(self._ws.all_connections)  # `connections` leaves out those closing
            _log.warning("ws_close_aborted", connections=len(still))
            for connection in still:
                connection.transport.abort()


def _observe(registry: Registry) -> None:
    """The registry's live counts as gauges, read at scrape time."""

    def connections(reg: Registry) -> list[tuple[tuple[str, ...], float]]:
        counts: dict[tuple[str, ...], float] = {}
        for session in list(reg.connections):
            key = (metrics.transport_of(session), "signed_in" if session.signed_in else "signing_in")
            counts[key] = counts.get(key, 0) + 1
        return list(counts.items())

    metrics.live(
        "gim_connect_connections", "open long connections, by transport and state", registry, connections,
        labels=("transport", "state"),
    )  # fmt: skip
    metrics.live("gim_connect_rooms", "rooms with members on this node", registry, lambda r: [((), r.stats()["rooms"])])
    metrics.live(
        "gim_connect_room_members", "room memberships on this node", registry,
        lambda r: [((), r.stats()["room_members"])],
    )  # fmt: skip


# asyncio accepts at most `backlog` connections per loop iteration and, on EMFILE, tries
# all of them (each failing); the servers are therefore created with a small backlog
# (tcp.ACCEPT_BATCH) and the kernel's listen queue is then deepened to LISTEN_BACKLOG
# (through a duplicate of the socket: listen() again only changes the queue length).
LISTEN_BACKLOG = 4096


def _deepen_backlog(sockets: Iterable[Any]) -> None:
    for sock in sockets:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
            dup.listen(LISTEN_BACKLOG)
