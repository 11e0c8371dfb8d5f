"""Sign-in codes for production (issue 12 item 4): the HTTP verifier against a local code
service, attempt limits with lockout per phone and per client address, and the
development code only on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from gim.client.api import GimApi
from gim.cmd.gim import run_dev_code
from gim.internal.business.server import BusinessServer
from gim.internal.business.verifier import HttpVerifier
from gim.pkg import config, redis_client
from gim.pkg.config import BusinessConfig, ConfigError
from gim.pkg.errors import Code, GimError
from gim.pkg.ratelimit import Rate, RateLimiter

DEV_CODE = "0000"
RIGHT = "2468"  # the code the local code service accepts


def new_phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


class CodeService:
    """A tiny HTTP/1.1 code service on loopback: 200 {"valid": code == RIGHT}; a phone
    number starting "500" gets HTTP 500, "999" no answer at all, "777" a body that is
    not JSON. Records every request body it read."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.never = asyncio.Event()  # what a phone "999" request waits for
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/verify?app=gim"

    async def stop(self) -> None:
        self.never.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            assert request_line.startswith(b"POST /verify?app=gim HTTP/1.1"), request_line
            self.bodies.append(body)
            phone = body["phone_number"]
            if phone.startswith("999"):
                await self.never.wait()
                return
            status, answer = 200, json.dumps({"valid": body["code"] == RIGHT}).encode()
            if phone.startswith("500"):
                status, answer = 500, b"oops"
            elif phone.startswith("777"):
                answer = b"<html>not json</html>"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def code_service() -> AsyncIterator[CodeService]:
    service = CodeService()
    await service.start()
    yield service
    await service.stop()


# -- the HTTP verifier on its own ----------------------------------------------------------


@pytest.mark.integration  # starts a gim process
async def test_http_verifier_valid_invalid_and_failures(code_service: CodeService) -> None:
    verifier = HttpVerifier(code_service.url, timeout=0.5)
    await verifier.verify("13800000001", RIGHT)  # right code: no error
    with pytest.raises(GimError) as wrong:
        await verifier.verify("13800000001", "1111")
    assert wrong.value.code == Code.WRONG_CODE
    assert code_service.bodies[:2] == [
        {"phone_number": "13800000001", "code": RIGHT},
        {"phone_number": "13800000001", "code": "1111"},
    ]
    # no answer within the timeout, HTTP 500, a body that is not JSON: "retry", never "wrong code"
    for phone in ("99900000001", "50000000001", "77700000001"):
        with pytest.raises(GimError) as failed:
            await verifier.verify(phone, RIGHT)
        assert failed.value.code == Code.UNAVAILABLE, (phone, failed.value)


@pytest.mark.integration  # starts a gim process
async def test_http_verifier_nobody_listening_is_unavailable() -> None:
    port = redis_client.free_port()  # nothing listens there
    verifier = HttpVerifier(f"http://127.0.0.1:{port}/verify", timeout=2.0)
    with pytest.raises(GimError) as failed:
        await verifier.verify("13800000001", RIGHT)
    assert failed.value.code == Code.UNAVAILABLE
    assert "retry" in failed.value.message


# -- a business node with its own limits, beside the cluster -------------------------------


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


MakeBusiness = Callable[..., Awaitable[GimApi]]


@pytest.fixture
async def business(cluster: Any) -> AsyncIterator[MakeBusiness]:
    """business(**config) -> a GimApi whose UserExt is a new business node (own Redis
    prefix, so its limits start empty; loopback not exempt) and whose LogicExt is the
    cluster's."""
    started: list[tuple[BusinessServer, GimApi]] = []
    storage = cluster.storage

    async def make(**keys: Any) -> GimApi:
        cfg = BusinessConfig(
            database_url=storage.database_url,
            redis_url=storage.redis_url,
            redis_prefix=f"{storage.redis_prefix}b{uuid.uuid4().hex[:6]}:",
            grpc_status=storage.status_mode,
            message_shards=4,
            int_listen="127.0.0.1:0",
            ext_listen="127.0.0.1:0",
            logic_int_addr=_addr(cluster.logic.int_port),
            **{"limit_exempt": "", "dev_code": DEV_CODE, **keys},
        )
        server = BusinessServer.from_config(cfg)
        await server.start()
        api = GimApi(_addr(cluster.logic.ext_port), _addr(server.ext_port))
        started.append((server, api))
        return api

    yield make
    for server, api in started:
        await api.close()
        await server.stop(1.0)


async def refused(call: Awaitable[object]) -> str:
    """The message of a RESOURCE_EXHAUSTED refusal (anything else fails the test)."""
    with pytest.raises(aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
    return info.value.details() or ""


async def test_thirty_wrong_codes_meet_a_lockout(business: MakeBusiness) -> None:
    api = await business()  # defaults: 5 wrong codes per phone, 20 per address, in 15 minutes
    device_id = await api.register_device()
    phone, other = new_phone(), new_phone()
    answers = []
    for _ in range(30):
        try:
            await api.sign_in(phone, "9999", device_id)
        except GimError as exc:
            answers.append(int(exc.code))
        except aio.AioRpcError as exc:
            answers.append(exc.code().name)
            assert exc.details() == "too many wrong codes for this phone: try again in 15 minutes", exc.details()
    assert answers == [Code.WRONG_CODE] * 5 + ["RESOURCE_EXHAUSTED"] * 25
    # locked: the right code is refused too
    message = await refused(api.sign_in(phone, DEV_CODE, device_id))
    assert message.startswith("too many wrong codes for this phone: try again in ")
    # another phone from the same address is not affected (refused attempts are not counted)
    creds = await api.sign_in(other, DEV_CODE, device_id)
    assert creds.user_id > 0 and creds.token


async def test_wrong_codes_from_one_address_lock_that_address(business: MakeBusiness) -> None:
    api = await business(sign_in_phone_limit="100/15m", sign_in_address_limit="4/15m")
    device_id = await api.register_device()
    for _ in range(2):  # 4 wrong codes over 2 phones
        phone = new_phone()
        for _ in range(2):
            with pytest.raises(GimError) as wrong:
                await api.sign_in(phone, "9999", device_id)
            assert wrong.value.code == Code.WRONG_CODE
    message = await refused(api.sign_in(new_phone(), DEV_CODE, device_id))
    assert message == "too many wrong codes from this address: try again in 15 minutes"


async def test_exempt_address_is_not_locked(business: MakeBusiness) -> None:
    api = await business(sign_in_phone_limit="100/15m", sign_in_address_limit="2/15m", limit_exempt="127.0.0.0/8")
    device_id = await api.register_device()
    for _ in range(4):
        with pytest.raises(GimError):
            await api.sign_in(new_phone(), "9999", device_id)
    assert (await api.sign_in(new_phone(), DEV_CODE, device_id)).user_id > 0


async def test_lockout_ends_with_its_window(business: MakeBusiness) -> None:
    api = await business(sign_in_phone_limit="2/1s")  # the window is the subject here
    device_id = await api.register_device()
    phone = new_phone()
    for _ in range(2):
        with pytest.raises(GimError):
            await api.sign_in(phone, "9999", device_id)
    assert "try again in 1 second" in await refused(api.sign_in(phone, DEV_CODE, device_id))
    async with asyncio.timeout(10):  # poll until the window has ended
        while True:
            try:
                creds = await api.sign_in(phone, DEV_CODE, device_id)
                break
            except aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
    assert creds.user_id > 0


async def test_sign_in_through_the_http_verifier(business: MakeBusiness, code_service: CodeService) -> None:
    api = await business(verifier="http", verifier_url=code_service.url, verifier_timeout=0.5, dev_code="")
    device_id = await api.register_device()
    phone = "138" + str(uuid.uuid4().int)[:8]
    creds = await api.sign_in(phone, RIGHT, device_id)
    assert creds.user_id > 0
    with pytest.raises(GimError) as wrong:
        await api.sign_in(phone, "1111", device_id)
    assert wrong.value.code == Code.WRONG_CODE
    with pytest.raises(GimError) as down:  # the code service does not answer in time
        await api.sign_in("999" + str(uuid.uuid4().int)[:8], RIGHT, device_id)
    assert down.value.code == Code.UNAVAILABLE
    assert {"phone_number": phone, "code": RIGHT} in code_service.bodies


async def test_failures_of_the_code_service_are_not_counted_as_wrong_codes(
    business: MakeBusiness, code_service: CodeService
) -> None:
    api = await business(verifier="http", verifier_url=code_service.url, sign_in_phone_limit="2/15m", dev_code="")
    device_id = await api.register_device()
    phone = "500" + str(uuid.uuid4().int)[:8]  # always HTTP 500
    for _ in range(4):
        with pytest.raises(GimError) as down:
            await api.sign_in(phone, RIGHT, device_id)
        assert down.value.code == Code.UNAVAILABLE  # never locked: nothing was wrong


@pytest.mark.integration  # starts a gim process
async def test_redis_unreachable_applies_no_limit() -> None:
    """The chosen failure mode: open (logged), as every other Redis use in gim."""
    client = redis_client.connect(f"redis://127.0.0.1:{redis_client.free_port()}/0")
    try:
        limiter = RateLimiter(client, "gimtest:", "test")
        assert await limiter.hit("x", 1, Rate(1, 60)) is None
        assert await limiter.over("x", 1, Rate(1, 60)) is None
        await limiter.check("x", 1, Rate(1, 60), "anything")  # does not raise
    finally:
        await client.aclose()


# -- the development code only on loopback ------------------------------------------------


def test_dev_code_refused_on_a_public_listen_address() -> None:
    for public in ("0.0.0.0:50301", ":50301", "10.1.2.3:50301", "[::]:50301"):
        with pytest.raises(ConfigError) as info:
            BusinessConfig(ext_listen=public, dev_code="0000")
        assert "dev_code_anywhere" in str(info.value) and public in str(info.value)
    for loopback in ("127.0.0.1:50301", "127.0.0.2:1", "[::1]:50301", "localhost:50301"):
        assert BusinessConfig(ext_listen=loopback, dev_code="0000").dev_code == "0000"
    assert BusinessConfig(ext_listen="0.0.0.0:50301", dev_code="0000", dev_code_anywhere=True).dev_code_anywhere
    assert BusinessConfig(ext_listen="0.0.0.0:50301", dev_code="").verifier == "dev"  # no code: nothing to refuse
    with pytest.raises(ConfigError, match="verifier=http: needs verifier_url"):
        BusinessConfig(verifier="http")
    with pytest.raises(ConfigError, match="sign_in_phone_limit"):
        BusinessConfig(sign_in_phone_limit="5 per minute")


@pytest.mark.integration  # starts a gim process
def test_business_process_with_dev_code_on_public_address_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    env.update(GIM_BUSINESS_EXT_LISTEN="0.0.0.0:0", GIM_BUSINESS_DEV_CODE="0000")
    done = subprocess.run(
        [sys.executable, "-P", "-m", "gim.cmd.business"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "dev_code is set but ext_listen=0.0.0.0:0 is not a loopback address" in lines[0], (
        done.stderr
    )


@pytest.mark.integration  # starts a gim process
def test_gim_run_keeps_the_dev_code_off_on_public_addresses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in [v for v in os.environ if v.startswith("GIM_")]:
        monkeypatch.delenv(var)
    assert run_dev_code("0000") == "0000"  # config/business.yaml: loopback
    monkeypatch.setenv("GIM_BUSINESS_EXT_LISTEN", "0.0.0.0:50301")
    assert run_dev_code("0000") == ""
    assert "the development code stays off" in capsys.readouterr().err
    monkeypatch.setenv("GIM_BUSINESS_DEV_CODE_ANYWHERE", "true")
    assert run_dev_code("0000") == "0000"
    monkeypatch.delenv("GIM_BUSINESS_DEV_CODE_ANYWHERE")
    monkeypatch.setenv("GIM_BUSINESS_DEV_CODE", "1234")  # set in business's own config: one line, no start
    with pytest.raises(config.ConfigError, match="dev_code is set but ext_listen=0.0.0.0:50301"):
        run_dev_code("0000")
