"""The connect process: TCP and WebSocket long connections, and ConnectInt."""

from __future__ import annotations

import asyncio

from grpc import aio
from websockets.asyncio.server import Server as WsServer

from gim.internal.connect import tcp, ws
from gim.internal.connect.api import ConnectIntServicer
from gim.internal.connect.registry import Registry
from gim.internal.connect.session import Node
from gim.pkg import log, rpc
from gim.pkg.config import ConnectConfig, split_host_port
from gim.pkg.pb import connect_int_pb2_grpc, logic_int_pb2, logic_int_pb2_grpc

_log = log.get("connect")


class ConnectServer:
    """Built from its dependencies; `start()` listens, `stop()` shuts down gracefully."""

    def __init__(self, config: ConnectConfig, logic_channel: aio.Channel) -> None:
        self.config = config
        self._logic_channel = logic_channel
        self.registry = Registry()
        self._grpc = rpc.new_server()
        connect_int_pb2_grpc.add_ConnectIntServicer_to_server(ConnectIntServicer(self.registry), self._grpc)
        self.node: Node | None = None
        self._tcp: asyncio.Server | None = None
        self._ws: WsServer | None = None
        self.tcp_port = self.ws_port = self.int_port = 0
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: ConnectConfig) -> ConnectServer:
        return cls(config, rpc.channel(config.logic_int_addr))

    async def start(self) -> None:
        self.int_port = rpc.bind(self._grpc, self.config.int_listen)
        host, _ = split_host_port(self.config.int_listen, "int_listen")
        conn_addr = self.config.conn_addr or f"{host}:{self.int_port}"
        self.node = Node(
            config=self.config,
            logic=logic_int_pb2_grpc.LogicIntStub(self._logic_channel),
            registry=self.registry,
            conn_addr=conn_addr,
        )
        await self._grpc.start()
        self._tcp = await tcp.serve(self.node, *split_host_port(self.config.tcp_listen, "tcp_listen"))
        self.tcp_port = self._tcp.sockets[0].getsockname()[1]
        self._ws = await ws.serve(self.node, *split_host_port(self.config.ws_listen, "ws_listen"))
        self.ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        self._sweeper = asyncio.get_running_loop().create_task(self._evict_idle())
        _log.info(
            "connect_started",
            tcp_port=self.tcp_port,
            ws_port=self.ws_port,
            int_port=self.int_port,
            conn_addr=conn_addr,
        )

    async def _evict_idle(self) -> None:
        """Close connections that have sent nothing for the idle timeout."""
        idle = self.config.idle_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(idle / 4, 30.0))
            cutoff = loop.time() - idle
            for session in [s for s in self.registry.connections if s.last_active < cutoff]:
                _log.info("conn_evicted", conn_id=session.conn_id, device_id=session.device_id)
                session.close("idle timeout")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, tell logic this node's devices are offline, close, stop gRPC."""
        assert self.node is not None
        self.node.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._tcp is not None:
            self._tcp.close()
        if self._ws is not None:
            self._ws.close(close_connections=False)
        try:
            await rpc.call(
                self.node.logic.ServerStop,
                logic_int_pb2.ServerStopReq(conn_addr=self.node.conn_addr),
                self.config.rpc_timeout,
            )
        except Exception as exc:  # logic may already be gone; devices then time out
            _log.warning("server_stop_failed", error=str(exc))
        for session in list(self.registry.connections):
            session.close("server shutting down")
        if self._ws is not None:
            await self._ws.wait_closed()
        await self._grpc.stop(grace)
        if self.node.tasks:
            await asyncio.wait(self.node.tasks, timeout=grace)
        await self._logic_channel.close()
        _log.info("connect_stopped")
