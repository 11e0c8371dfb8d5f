"""The acks of a node's connections, on their way to logic.

Acks that arrive while earlier ones are with logic go together in one
`LogicInt.MessageACKs` call, so receivers that ack every message (as clients do) cost
logic a few calls, not one per ack. Each ack is still stored or fails alone. A logic node
without that call (an older one answers UNIMPLEMENTED) gets one `MessageACK` per ack.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio

from gim.pkg import log, rpc
from gim.pkg.batcher import Batcher
from gim.pkg.errors import GimError, errors_of
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc

_log = log.get("acks")

BATCH = 500  # acks in one call, at most (logic takes 1,000)
CALLS = 4  # calls in flight at once


class Acks:
    def __init__(self, logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> None:
        self._logic = logic
        self._timeout = timeout
        self._one_by_one = False
        self._batcher: Batcher[logic_int_pb2.MessageACKReq, None] = Batcher("acks", self._send, BATCH, CALLS)

    async def ack(self, req: logic_int_pb2.MessageACKReq) -> None:
        """Return once logic has stored the ack; raise `GimError` if it refused it,
        `grpc.aio.AioRpcError` if it could not be asked."""
        await self._batcher.submit(req)

    async def _send(self, reqs: list[logic_int_pb2.MessageACKReq]) -> list[None | BaseException]:
        if not self._one_by_one:
            try:
                req = logic_int_pb2.MessageACKsReq(acks=reqs)
                resp = await rpc.call(self._logic.MessageACKs, req, self._timeout, wait_for_ready=True)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    return [exc] * len(reqs)  # each caller sees why; not retried one by one
                _log.info("acks_one_by_one", reason="logic has no MessageACKs")
                self._one_by_one = True
            except GimError as exc:
                return [exc] * len(reqs)
            else:
                return list(errors_of(resp.results, len(reqs), "acks"))
        return list(await asyncio.gather(*(self._one(req) for req in reqs)))

    async def _one(self, req: logic_int_pb2.MessageACKReq) -> None | BaseException:
        try:
            await rpc.call(self._logic.MessageACK, req, self._timeout, wait_for_ready=True)
        except (GimError, aio.AioRpcError) as exc:
            return exc
        return None
