"""The sign-ins of a node's connections, on their way to logic.

Sign-ins that arrive while earlier ones are with logic go together in one
`LogicInt.ConnSignIns` call, so a crowd of clients connecting at once (a node restart,
a mobile network coming back) costs logic and business a few calls, not one each.
Each sign-in still succeeds or fails alone. A logic node without that call (an older
one answers UNIMPLEMENTED) gets one `ConnSignIn` per sign-in.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio

from gim.pkg import log, rpc
from gim.pkg.batcher import Batcher
from gim.pkg.errors import GimError, errors_of
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc

_log = log.get("sign_ins")

BATCH = 200  # sign-ins in one call, at most
CALLS = 4  # calls in flight at once


class SignIns:
    def __init__(self, logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> None:
        self._logic = logic
        self._timeout = timeout
        self._one_by_one = False
        self._batcher: Batcher[logic_int_pb2.ConnSignInReq, int | None] = Batcher("sign_ins", self._send, BATCH, CALLS)

    async def sign_in(self, req: logic_int_pb2.ConnSignInReq) -> int | None:
        """Return once logic has the device online here, with the user's highest seq then
        (None if logic did not say); raise `GimError` if it refused the sign-in,
        `grpc.aio.AioRpcError` if it could not be asked."""
        return await self._batcher.submit(req)

    async def _send(self, reqs: list[logic_int_pb2.ConnSignInReq]) -> list[int | None | BaseException]:
        if not self._one_by_one:
            try:
                req = logic_int_pb2.ConnSignInsReq(sign_ins=reqs)
                resp = await rpc.call(self._logic.ConnSignIns, req, self._timeout, wait_for_ready=True)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    return [exc] * len(reqs)  # each caller sees why; not retried one by one
                _log.info("sign_ins_one_by_one", reason="logic has no ConnSignIns")
                self._one_by_one = True
            except GimError as exc:
                return [exc] * len(reqs)
            else:
                errors: list[int | None | BaseException] = list(errors_of(resp.results, len(reqs), "sign-ins"))
                if len(resp.results) != len(reqs):
                    return errors  # each one "retry"
                return [error or _max_seq(result) for error, result in zip(errors, resp.results, strict=True)]
        return list(await asyncio.gather(*(self._one(req) for req in reqs)))

    async def _one(self, req: logic_int_pb2.ConnSignInReq) -> int | None | BaseException:
        try:
            resp = await rpc.call(self._logic.ConnSignIn, req, self._timeout, wait_for_ready=True)
        except (GimError, aio.AioRpcError) as exc:
            return exc
        return _max_seq(resp)


def _max_seq(answer: logic_int_pb2.ConnSignInResp | logic_int_pb2.SignInResult) -> int | None:
    """The user's highest seq that logic answered with a sign-in (an older logic does not)."""
    return answer.max_seq if answer.HasField("max_seq") else None
