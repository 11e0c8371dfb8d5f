"""Batched calls through real gRPC: LogicInt.MessageACKs and LogicInt.Offlines, connect's
merging of concurrent acks (`result_calls`) into few calls, and the one-by-one fallback
for a logic without it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from grpc import aio

from gim.internal.connect import result_calls
from gim.pkg import rpc
from gim.pkg.errors import GIM_CODE_KEY, Code, GimError, grpc_status
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import logic_int_pb2_grpc as li_grpc
from gim.pkg.schema import device, device_ack

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gimtest.cluster import Cluster


TIMEOUT = 10.0
DEVICES = 40


class _CountingLogic(li_grpc.LogicIntServicer):
    """Passes acks on to the cluster's logic, counting the calls; `batched=False` is a
    logic without MessageACKs. The first call waits for `release`: what comes meanwhile
    waits for the next one."""

    def __init__(self, logic: li_grpc.LogicIntStub, batched: bool) -> None:
        self.logic = logic
        self.batched = batched
        self.sizes: list[int] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def MessageACKs(self, request: li.MessageACKsReq, context: Any) -> li.MessageACKsResp:
        if not self.batched:
            return await super().MessageACKs(request, context)  # type: ignore[no-any-return]
        self.sizes.append(len(request.acks))
        await self._hold()
        resp: li.MessageACKsResp = await rpc.call(self.logic.MessageACKs, request, TIMEOUT)
        return resp

    async def MessageACK(self, request: li.MessageACKReq, context: Any) -> li.MessageACKResp:
        self.sizes.append(1)
        await self._hold()
        try:
            resp: li.MessageACKResp = await rpc.call(self.logic.MessageACK, request, TIMEOUT)
        except GimError as exc:  # passed on the way gim servers fail a call: a status and the gim-code trailer
            await context.abort(grpc_status(exc.code, "gim"), exc.message, ((GIM_CODE_KEY, str(int(exc.code))),))
        return resp

    async def _hold(self) -> None:
        self.arrived.set()
        await self.release.wait()


@contextlib.asynccontextmanager
async def _acks_via(servicer: _CountingLogic) -> AsyncIterator[result_calls.Results[li.MessageACKReq]]:
    server = aio.server()
    li_grpc.add_LogicIntServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = rpc.channel(f"127.0.0.1:{port}", private=True)
    try:
        yield result_calls.acks(li_grpc.LogicIntStub(channel), TIMEOUT)
    finally:
        await channel.close()
        await server.stop(0)


async def _stored(cluster: Cluster, engine: AsyncEngine, user_id: int) -> dict[int, int]:
    """The user's acks in the database, once logic has written behind what it holds."""
    await cluster.logic.acks.flush()
    c = device_ack.c
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(c.device_id, c.seq).where(c.user_id == user_id))
    return {int(device_id): int(seq) for device_id, seq in rows}


async def _ack_all(
    acks: result_calls.Results[li.MessageACKReq], logic: _CountingLogic, user_id: int
) -> tuple[list[BaseException | None], int]:
    """Every device of `user_id` acks at once (one a bad ack), while the first call is held;
    the outcomes, and how many calls were on their way while it was held."""
    reqs = [li.MessageACKReq(user_id=user_id, device_id=d, device_ack=d * 10) for d in range(1, DEVICES + 1)]
    reqs.append(li.MessageACKReq(user_id=user_id, device_id=DEVICES + 1, device_ack=-1))
    first = asyncio.create_task(acks.done(reqs[0]))
    await asyncio.wait_for(logic.arrived.wait(), TIMEOUT)
    rest = [asyncio.create_task(acks.done(r)) for r in reqs[1:]]
    await asyncio.sleep(0)  # let them queue behind the held call (no timing: they are queued once started)
    calls_while_held = len(acks.workers)
    logic.release.set()
    return list(await asyncio.gather(first, *rest, return_exceptions=True)), calls_while_held


async def test_concurrent_acks_go_together_and_fail_alone(cluster: Cluster, engine: AsyncEngine) -> None:
    user_id = random.randrange(10**12, 10**13)
    logic = _CountingLogic(cluster.logic_int, batched=True)
    async with _acks_via(logic) as acks:
        outcomes, calls_while_held = await _ack_all(acks, logic, user_id)
    assert outcomes[:-1] == [None] * DEVICES
    assert isinstance(outcomes[-1], GimError) and outcomes[-1].code == Code.BAD_REQUEST, "the bad ack fails alone"
    assert calls_while_held == 1, "one MessageACKs call at a time: the others wait for it"
    assert logic.sizes == [1, DEVICES], f"the acks queued behind the held call go in one: {logic.sizes}"
    assert await _stored(cluster, engine, user_id) == {d: d * 10 for d in range(1, DEVICES + 1)}


async def test_a_logic_without_message_acks_gets_them_one_by_one(cluster: Cluster, engine: AsyncEngine) -> None:
    user_id = random.randrange(10**12, 10**13)
    logic = _CountingLogic(cluster.logic_int, batched=False)
    async with _acks_via(logic) as acks:
        outcomes, _ = await _ack_all(acks, logic, user_id)
        assert await acks.done(li.MessageACKReq(user_id=user_id, device_id=1, device_ack=11)) is None
    assert outcomes[:-1] == [None] * DEVICES
    assert isinstance(outcomes[-1], GimError) and outcomes[-1].code == Code.BAD_REQUEST
    assert logic.sizes == [1] * (DEVICES + 2), "one MessageACK per ack"
    assert await _stored(cluster, engine, user_id) == {1: 11} | {d: d * 10 for d in range(2, DEVICES + 1)}


async def test_offlines_mark_each_connection_offline_alone(cluster: Cluster, engine: AsyncEngine) -> None:
    """A crowd of connections gone at once, in one call: each device goes offline only if
    it is still signed in with the connection named."""
    (first, second) = await cluster.new_user(devices=2)
    sign_ins = [
        li.ConnSignInReq(user_id=c.user_id, device_id=c.device_id, token=c.token, conn_addr="127.0.0.1:1", client_addr=f"peer#{i}")
        for i, c in enumerate((first, second))
    ]  # fmt: skip
    signed = await cluster.logic_int.ConnSignIns(li.ConnSignInsReq(sign_ins=sign_ins))
    assert [r.code for r in signed.results] == [0, 0]
    gone = [
        li.OfflineReq(user_id=first.user_id, device_id=first.device_id, client_addr="peer#0"),
        li.OfflineReq(user_id=second.user_id, device_id=second.device_id, client_addr="an older connection"),
    ]
    resp = await cluster.logic_int.Offlines(li.OfflinesReq(offlines=gone))
    assert [r.code for r in resp.results] == [0, 0]
    c = device.c
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(c.id, c.status).where(c.id.in_([first.device_id, second.device_id])))
        status = {int(i): int(s) for i, s in rows}
    assert status == {first.device_id: 0, second.device_id: 1}, "only the connection still signed in there"
