"""Closing a device's previous connection when it signs in on another connect node (an
edge: it calls the previous node's ConnectInt).

A device has one connection. A connect node replaces the device's older connection when
it signs in there again; when the device moves to another node, logic (which knows the
previous node and connection from the device's row) asks that node to close it with
`ConnectInt.CloseConnection(device_id, client_addr)`. The node closes the connection only
if it is still that one, and that close does not mark the device offline (`Offline`
compares client_addr, and the row names the new connection). Best effort: a node that
cannot be reached is logged; its connection then receives nothing (deliveries go to the
new node) until it closes for idleness or its client reconnects.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc import aio

from gim.internal.logic.edge.connect_client import Deliverer
from gim.internal.logic.values import Connection
from gim.pkg import log, rpc
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_int_pb2

_log = log.get("replaced")

CLOSE_TIMEOUT = 5.0  # seconds one CloseConnection call may take


class PreviousConnections:
    def __init__(self, deliverer: Deliverer, timeout: float = CLOSE_TIMEOUT) -> None:
        self._deliverer = deliverer
        self._timeout = timeout
        self._failures = log.Summary(_log)
        self._tasks: set[asyncio.Task[Any]] = set()

    def close(self, device_id: int, previous: Connection) -> None:
        """Ask the previous node to close the device's connection there (in the background:
        the sign-in does not wait for another node)."""
        task = asyncio.get_running_loop().create_task(self._close(device_id, previous))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the closes in flight (each bounded by the timeout)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _close(self, device_id: int, previous: Connection) -> None:
        stub = self._deliverer.stub(previous.conn_addr)
        req = connect_int_pb2.CloseConnectionReq(device_id=device_id, client_addr=previous.client_addr)
        try:
            resp = await rpc.call(stub.CloseConnection, req, self._timeout)
        except (GimError, aio.AioRpcError) as exc:
            kind = str(int(exc.code)) if isinstance(exc, GimError) else exc.code().name
            self._failures.warning(
                "close_previous_failed",
                kind=f"{previous.conn_addr} {kind}",
                device_id=device_id,
                conn_addr=previous.conn_addr,
            )
            return
        _log.info(
            "previous_connection_closed" if resp.closed else "previous_connection_gone",
            device_id=device_id,
            conn_addr=previous.conn_addr,
            client_addr=previous.client_addr,
        )
