"""The acks of a node's connections, on their way to logic: merged into
`LogicInt.MessageACKs` calls (see `merged_calls`), so receivers that ack every message (as
clients do) cost logic a few calls, not one per ack; one `MessageACK` each for an older
logic.
"""

from __future__ import annotations

from gim.internal.connect.merged_calls import MergedCalls
from gim.pkg import rpc
from gim.pkg.errors import errors_of
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc

BATCH = 500  # acks in one call, at most (logic takes 1,000)
CALLS = 4  # calls in flight at once


class Acks(MergedCalls[logic_int_pb2.MessageACKReq, None]):
    def __init__(self, logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> None:
        super().__init__("acks", "MessageACKs", BATCH, CALLS)
        self._logic = logic
        self._timeout = timeout

    async def ack(self, req: logic_int_pb2.MessageACKReq) -> None:
        """Return once logic has stored the ack; raise `GimError` if it refused it,
        `grpc.aio.AioRpcError` if it could not be asked."""
        await self.submit(req)

    async def _many(self, reqs: list[logic_int_pb2.MessageACKReq]) -> list[None | BaseException]:
        req = logic_int_pb2.MessageACKsReq(acks=reqs)
        resp = await rpc.call(self._logic.MessageACKs, req, self._timeout, wait_for_ready=True)
        return list(errors_of(resp.results, len(reqs), "acks"))

    async def _one(self, req: logic_int_pb2.MessageACKReq) -> None:
        await rpc.call(self._logic.MessageACK, req, self._timeout, wait_for_ready=True)
