"""What every connection of one connect node shares: `ConnectContext`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from gim.internal.connect import result_calls
from gim.internal.connect.pending import PendingByAddress
from gim.internal.connect.read_ahead import ReadAheads
from gim.internal.connect.registry import Registry
from gim.internal.connect.sign_ins import SignIns
from gim.pkg import log
from gim.pkg.config import ConnectConfig
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc
from gim.pkg.ratelimit import networks

if TYPE_CHECKING:
    from gim.internal.connect.session import Session

_log = log.get("connect")


class ShuttingDown(Exception):
    """Sign-in refused: this node is stopping."""


@dataclasses.dataclass
class ConnectContext:
    """The node's configuration, its logic stub, its registry of connections, and the
    node-wide state of sign-ins and background tasks."""

    config: ConnectConfig
    logic: logic_int_pb2_grpc.LogicIntStub
    registry: Registry
    conn_addr: str
    # LogicInt.Sync answering raw bytes: SyncResp and SyncOutput are the same on the wire
    # (messages = 1, has_more = 2), so a one-page answer is passed on without parsing it.
    sync_raw: Any = None
    stopping: bool = False
    tasks: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)
    _device_locks: dict[int, tuple[asyncio.Lock, list[int]]] = dataclasses.field(default_factory=dict)
    _sign_ins: int = 0
    _no_sign_ins: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ack_failures: log.Summary = dataclasses.field(default_factory=lambda: log.Summary(_log))

    sign_ins: SignIns = dataclasses.field(init=False)
    acks: result_calls.Results[logic_int_pb2.MessageACKReq] = dataclasses.field(init=False)
    offlines: result_calls.Results[logic_int_pb2.OfflineReq] = dataclasses.field(init=False)
    pending: PendingByAddress = dataclasses.field(init=False)  # connections not signed in, per address
    read_aheads: ReadAheads = dataclasses.field(init=False)  # sync pages held for the next PT_SYNCs

    def __post_init__(self) -> None:
        self._no_sign_ins.set()
        self.sign_ins = SignIns(self.logic, self.config.rpc_timeout)
        self.acks = result_calls.acks(self.logic, self.config.rpc_timeout)
        self.offlines = result_calls.offlines(self.logic, self.config.rpc_timeout)
        self.pending = PendingByAddress(self.config.max_pending_per_address, networks(self.config.limit_exempt))
        self.read_aheads = ReadAheads(self.config.sync_read_ahead_bytes)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @contextlib.asynccontextmanager
    async def signing_in(self, device_id: int, connection: Session | None = None) -> AsyncIterator[None]:
        """One sign-in of a device at a time on this node, none once stopping.

        Serializing per device makes "ConnSignIn at logic, then bind here" atomic, so
        that the device's connection here is always the one logic recorded last. While it
        signs in, `connection` is the device's arriving one (`Registry.arriving`): a push
        for the device meanwhile is noted on it.
        """
        if self.stopping:
            raise ShuttingDown
        self._sign_ins += 1
        self._no_sign_ins.clear()
        lock, users = self._device_locks.setdefault(device_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if self.stopping:
                    raise ShuttingDown
                if connection is None:
                    yield
                    return
                self.registry.arriving[device_id] = connection
                try:
                    yield
                finally:
                    del self.registry.arriving[device_id]
        finally:
            users[0] -= 1
            if not users[0]:
                del self._device_locks[device_id]
            self._sign_ins -= 1
            if not self._sign_ins:
                self._no_sign_ins.set()

    async def sign_ins_done(self, timeout: float) -> None:
        """Wait (bounded) for sign-ins already talking to logic."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_sign_ins.wait(), timeout)
