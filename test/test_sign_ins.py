"""Batched sign-ins through real gRPC: UserInt.AuthMany, LogicInt.ConnSignIns, connect's
merging of concurrent sign-ins, and the one-by-one fallbacks for peers without them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from grpc import aio

from gim.internal.connect.sign_ins import SignIns
from gim.internal.logic.edge.business_client import UserClient
from gim.internal.logic.edge.previous_connections import PreviousConnections
from gim.internal.logic.edge.servicers import LogicIntServicer
from gim.pkg import rpc
from gim.pkg.cache import Cache
from gim.pkg.errors import BAD_TOKEN, GIM_CODE_KEY, Code, GimError, grpc_status
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import logic_int_pb2_grpc as li_grpc
from gim.pkg.pb import user_int_pb2 as ui
from gim.pkg.pb import user_int_pb2_grpc as ui_grpc

if TYPE_CHECKING:
    from gimtest.cluster import Cluster


TIMEOUT = 10.0


async def test_auth_many_answers_each_token(cluster: Cluster) -> None:
    alice, bob = await cluster.new_user(devices=2)
    auths = [
        ui.AuthReq(user_id=alice.user_id, device_id=alice.device_id, token=alice.token),
        ui.AuthReq(user_id=alice.user_id, device_id=alice.device_id, token="wrong"),
        ui.AuthReq(user_id=bob.user_id, device_id=bob.device_id, token=bob.token),
        ui.AuthReq(user_id=0, device_id=bob.device_id, token=bob.token),
        ui.AuthReq(user_id=alice.user_id, device_id=bob.device_id, token=alice.token),  # another device's token
    ]
    resp = await rpc.call(cluster.user_int.AuthMany, ui.AuthManyReq(auths=auths), TIMEOUT)
    assert [r.code for r in resp.results] == [0, Code.UNAUTHORIZED, 0, Code.UNAUTHORIZED, Code.UNAUTHORIZED]
    assert resp.results[1].message == resp.results[4].message == BAD_TOKEN and "required" in resp.results[3].message


async def test_conn_sign_ins_each_succeeds_or_fails_alone(cluster: Cluster) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    node = "127.0.0.1:2"  # a node address of this test only

    def req(user_id: int, device_id: int, token: str, conn_addr: str = node) -> li.ConnSignInReq:
        return li.ConnSignInReq(
            user_id=user_id, device_id=device_id, token=token, conn_addr=conn_addr, client_addr=f"c{device_id}"
        )

    reqs = [
        req(alice.user_id, alice.device_id, alice.token),
        req(bob.user_id, bob.device_id, "wrong"),
        req(bob.user_id, bob.device_id, bob.token, conn_addr=""),
        req(alice.user_id, 10**12, alice.token),  # no such device (and no token for it)
    ]
    resp = await rpc.call(cluster.logic_int.ConnSignIns, li.ConnSignInsReq(sign_ins=reqs), TIMEOUT)
    assert [r.code for r in resp.results] == [0, Code.UNAUTHORIZED, Code.BAD_REQUEST, Code.UNAUTHORIZED]
    assert {d.device_id for d in await cluster.logic.devices.online([alice.user_id])} == {alice.device_id}
    assert await cluster.logic.devices.online([bob.user_id]) == []
    await rpc.call(cluster.logic_int.ServerStop, li.ServerStopReq(conn_addr=node), TIMEOUT)


async def refuse(context: Any, message: str) -> None:
    """Fail the call the way gim servers do: a status and the `gim-code` trailer."""
    error = GimError(Code.UNAUTHORIZED, message)
    await context.abort(grpc_status(error.code, "gim"), message, ((GIM_CODE_KEY, str(int(error.code))),))


class _AuthOnly(ui_grpc.UserIntServicer):
    """A business backend written for the original contract: Auth, no AuthMany."""

    def __init__(self) -> None:
        self.calls = 0

    async def Auth(self, request: ui.AuthReq, context: Any) -> ui.AuthResp:
        self.calls += 1
        if request.token != f"t{request.user_id}":
            await refuse(context, "bad token")
        return ui.AuthResp()


class _CountingLogic(li_grpc.LogicIntServicer):
    """LogicInt with ConnSignIns (or, `batched=False`, only ConnSignIn), counting calls."""

    def __init__(self, batched: bool) -> None:
        self.batched = batched
        self.sizes: list[int] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def ConnSignIns(self, request: li.ConnSignInsReq, context: Any) -> li.ConnSignInsResp:
        if not self.batched:
            return await super().ConnSignIns(request, context)  # type: ignore[no-any-return]
        self.sizes.append(len(request.sign_ins))
        self.arrived.set()
        await self.release.wait()  # hold the first call: what comes meanwhile waits for the next
        codes = [Code.UNAUTHORIZED if r.token == "bad" else 0 for r in request.sign_ins]
        return li.ConnSignInsResp(results=[li.SignInResult(code=int(c), message="bad" if c else "") for c in codes])

    async def ConnSignIn(self, request: li.ConnSignInReq, context: Any) -> li.ConnSignInResp:
        self.sizes.append(1)
        if request.token == "bad":
            await refuse(context, "bad")
        return li.ConnSignInResp()


@contextlib.asynccontextmanager
async def serving(add: Any, servicer: Any) -> AsyncIterator[aio.Channel]:
    server = aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = rpc.channel(f"127.0.0.1:{port}", private=True)
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


async def test_logic_asks_a_backend_without_auth_many_one_by_one(cluster: Cluster) -> None:
    backend = _AuthOnly()
    async with serving(ui_grpc.add_UserIntServicer_to_server, backend) as channel:
        users = UserClient(ui_grpc.UserIntStub(channel), TIMEOUT, Cache(cluster.logic._redis, "t:", 60))
        for _ in range(2):  # the second time it does not try AuthMany again
            results = await users.auth_many([(1, 1, "t1"), (2, 2, "nope"), (3, 3, "t3")])
            assert [r.code if r else 0 for r in results] == [0, Code.UNAUTHORIZED, 0]
    assert backend.calls == 6


async def test_concurrent_sign_ins_go_together_and_fail_alone() -> None:
    logic = _CountingLogic(batched=True)
    async with serving(li_grpc.add_LogicIntServicer_to_server, logic) as channel:
        sign_ins = SignIns(li_grpc.LogicIntStub(channel), TIMEOUT)

        async def one(i: int) -> str:
            try:
                await sign_ins.sign_in(
                    li.ConnSignInReq(user_id=i, device_id=i, token="bad" if i == 7 else "ok", conn_addr="n")
                )
            except GimError as exc:
                return f"refused {int(exc.code)}"
            return "ok"

        first = asyncio.ensure_future(one(0))
        await logic.arrived.wait()  # the first call is with logic, and held there
        rest = []
        for i in range(1, 50):  # arriving one by one while the first call is held
            rest.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(0)
        calls_while_held = len(sign_ins.workers)
        logic.release.set()
        outcomes = [await first] + [await r for r in rest]
    assert outcomes == ["ok"] * 7 + ["refused 10000"] + ["ok"] * 42
    # one call on its way at a time: the rest waited for it, then went together
    assert calls_while_held == 1 and logic.sizes == [1, 49]


async def test_a_logic_without_conn_sign_ins_gets_one_call_each() -> None:
    logic = _CountingLogic(batched=False)
    async with serving(li_grpc.add_LogicIntServicer_to_server, logic) as channel:
        sign_ins = SignIns(li_grpc.LogicIntStub(channel), TIMEOUT)
        await sign_ins.sign_in(li.ConnSignInReq(user_id=1, device_id=1, token="ok", conn_addr="n"))
        try:
            await sign_ins.sign_in(li.ConnSignInReq(user_id=2, device_id=2, token="bad", conn_addr="n"))
        except GimError as exc:
            assert exc.code == Code.UNAUTHORIZED
        else:
            raise AssertionError("a bad token must be refused")
    assert logic.sizes == [1, 1]


class _HeldBusiness(ui_grpc.UserIntServicer):
    """Passes AuthMany on to the cluster's business, counting the sizes asked; the first
    call waits for `release`."""

    def __init__(self, business: ui_grpc.UserIntStub) -> None:
        self.business = business
        self.sizes: list[int] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def AuthMany(self, request: ui.AuthManyReq, context: Any) -> ui.AuthManyResp:
        self.sizes.append(len(request.auths))
        self.arrived.set()
        await self.release.wait()
        resp: ui.AuthManyResp = await rpc.call(self.business.AuthMany, request, TIMEOUT)
        return resp


async def test_sign_in_calls_of_several_nodes_go_to_business_together(cluster: Cluster) -> None:
    """ConnSignIns calls that come while another is being handled (each connect node sends
    its own) are checked in one AuthMany, and each call is answered in its own order."""
    users = [creds for (creds,) in [await cluster.new_user() for _ in range(5)]]
    business = _HeldBusiness(cluster.user_int)
    async with serving(ui_grpc.add_UserIntServicer_to_server, business) as channel:
        client = UserClient(ui_grpc.UserIntStub(channel), TIMEOUT, Cache(cluster.logic._redis, "t:", 60))
        logic = cluster.logic
        servicer = LogicIntServicer(
            logic.devices, logic.messages, logic.sync, client, logic.rooms, PreviousConnections(logic.deliverer)
        )

        def call(node: str, *who: tuple[int, str]) -> Awaitable[li.ConnSignInsResp]:
            reqs = [
                li.ConnSignInReq(user_id=users[i].user_id, device_id=users[i].device_id, token=token, conn_addr=node, client_addr=f"c{i}")
                for i, token in who
            ]  # fmt: skip
            return servicer.ConnSignIns(li.ConnSignInsReq(sign_ins=reqs), None)  # type: ignore[arg-type]  # no context used

        first = asyncio.ensure_future(call("127.0.0.1:2", (0, users[0].token)))
        await business.arrived.wait()  # the first call is with business, and held there
        second = asyncio.ensure_future(call("127.0.0.1:3", (1, users[1].token), (2, "wrong")))
        await asyncio.sleep(0)  # queued behind the first (no timing: queued once started)
        third = asyncio.ensure_future(call("127.0.0.1:4", (3, users[3].token), (4, users[4].token)))
        await asyncio.sleep(0)  # one batch at a time: it waits with the second, not beside the first
        business.release.set()
        answers = [[(r.code, r.HasField("max_seq")) for r in (await c).results] for c in (first, second, third)]
    assert answers == [[(0, True)], [(0, True), (Code.UNAUTHORIZED, False)], [(0, True), (0, True)]]
    assert business.sizes == [1, 4], "the two calls that waited went to business as one"
    for i in (0, 1, 3, 4):
        assert {d.device_id for d in await logic.devices.online([users[i].user_id])} == {users[i].device_id}
    for node in ("127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"):
        await rpc.call(cluster.logic_int.ServerStop, li.ServerStopReq(conn_addr=node), TIMEOUT)
