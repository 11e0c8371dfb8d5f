"""The sign-ins of a node's connections, on their way to logic: merged into
`LogicInt.ConnSignIns` calls (see `merged_calls`), so a crowd of clients connecting at
once (a node restart, a mobile network coming back) costs logic and business a few calls,
not one each; one `ConnSignIn` each for an older logic.
"""

from __future__ import annotations

from gim.internal.connect.merged_calls import MergedCalls
from gim.pkg import rpc
from gim.pkg.errors import errors_of
from gim.pkg.pb import logic_int_pb2, logic_int_pb2_grpc

BATCH = 200  # sign-ins in one call, at most (one call on its way at a time: merged_calls)


class SignIns(MergedCalls[logic_int_pb2.ConnSignInReq, int | None]):
    def __init__(self, logic: logic_int_pb2_grpc.LogicIntStub, timeout: float) -> None:
        super().__init__("sign_ins", "ConnSignIns", BATCH)
        self._logic = logic
        self._timeout = timeout

    async def sign_in(self, req: logic_int_pb2.ConnSignInReq) -> int | None:
        """Return once logic has the device online here, with the user's highest seq then
        (None if logic did not say); raise `GimError` if it refused the sign-in,
        `grpc.aio.AioRpcError` if it could not be asked."""
        return await self.submit(req)

    async def _many(self, reqs: list[logic_int_pb2.ConnSignInReq]) -> list[int | None | BaseException]:
        req = logic_int_pb2.ConnSignInsReq(sign_ins=reqs)
        resp = await rpc.call(self._logic.ConnSignIns, req, self._timeout, wait_for_ready=True)
        errors: list[int | None | BaseException] = list(errors_of(resp.results, len(reqs), "sign-ins"))
        if len(resp.results) != len(reqs):
            return errors  # each one "retry"
        return [error or _max_seq(result) for error, result in zip(errors, resp.results, strict=True)]

    async def _one(self, req: logic_int_pb2.ConnSignInReq) -> int | None:
        return _max_seq(await rpc.call(self._logic.ConnSignIn, req, self._timeout, wait_for_ready=True))


def _max_seq(answer: logic_int_pb2.ConnSignInResp | logic_int_pb2.SignInResult) -> int | None:
    """The user's highest seq that logic answered with a sign-in (an older logic does not)."""
    return answer.max_seq if answer.HasField("max_seq") else None
