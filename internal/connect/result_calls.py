"""Calls of a node's connections that logic answers with nothing but a result each, on
their way to logic, merged (see `merged_calls`): the acks (`LogicInt.MessageACKs`), so
receivers that ack every message (as clients do) cost logic a few calls, not one per ack;
and the connections gone (`LogicInt.Offlines`), so a crowd of clients dropped at once (a
network blip) does too. One `MessageACK` / `Offline` each for an older logic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gim.internal.connect.merged_calls import MergedCalls
from gim.pkg import rpc
from gim.pkg.errors import errors_of
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc

# Requests in one call, at most (logic takes 1,000); one call on its way at a time
# (merged_calls). Nothing waits on these answers but the acking connection's next ack,
# which folds into the highest meanwhile, or a connection already gone.
BATCH = 500

Req = TypeVar("Req")


class Results(MergedCalls[Req, None], Generic[Req]):
    """Requests of one kind, merged into a batch call answered with one result each."""

    def __init__(
        self, name: str, method: str, many: Any, one: Any, wrap: Callable[[list[Req]], Any], timeout: float
    ) -> None:
        """`many`, `one`: the stub's batch call (named `method`) and single call; `wrap`
        makes the batch request of the requests."""
        super().__init__(name, method, BATCH)
        self._many_call, self._one_call, self._wrap, self._timeout = many, one, wrap, timeout

    async def done(self, req: Req) -> None:
        """Return once logic has done it; raise `GimError` if it refused it,
        `grpc.aio.AioRpcError` if it could not be asked."""
        await self.submit(req)

    async def _many(self, reqs: list[Req]) -> list[None | BaseException]:
        resp = await rpc.call(self._many_call, self._wrap(reqs), self._timeout, wait_for_ready=True)
        return list(errors_of(resp.results, len(reqs), self._name))

    async def _one(self, req: Req) -> None:
        await rpc.call(self._one_call, req, self._timeout, wait_for_ready=True)


def acks(logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> Results[logic_int_pb2.MessageACKReq]:
    wrap = lambda r: logic_int_pb2.MessageACKsReq(acks=r)  # noqa: E731
    return Results("acks", "MessageACKs", logic.MessageACKs, logic.MessageACK, wrap, timeout)


def offlines(logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> Results[logic_int_pb2.OfflineReq]:
    wrap = lambda r: logic_int_pb2.OfflinesReq(offlines=r)  # noqa: E731
    return Results("offlines", "Offlines", logic.Offlines, logic.Offline, wrap, timeout)
