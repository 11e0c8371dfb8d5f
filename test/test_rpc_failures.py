"""Honest failures (issue 11): a dependency that is down or loading is UNAVAILABLE with gim
code 10002, a real bug stays INTERNAL, and a burst of failures is logged as one line per
kind, not a traceback per call. A real gRPC server (rpc.new_server) on loopback whose
handlers raise what Redis, the database and a bug raise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc import aio
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_exc

from gim.pkg import rpc
from gim.pkg.errors import GIM_CODE_KEY, Code, GimError, Overloaded

FAILURES: dict[str, Callable[[], Exception]] = {
    "redis_down": lambda: redis_errors.ConnectionError("Connection closed by server."),
    "redis_loading": lambda: redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    "redis_timeout": lambda: redis_errors.TimeoutError("Timeout reading from socket"),
    "database_gone": lambda: sa_exc.OperationalError("SELECT 1", {}, Exception("(2013) Lost connection")),
    "bug": lambda: KeyError("oops"),
    "refused": lambda: GimError(Code.USER_NOT_FOUND, "user 7 not found"),
    "overloaded": lambda: Overloaded("the message store has 20000 rows waiting, retry later"),
}


async def _fail(request: bytes, context: Any) -> bytes:
    raise FAILURES[request.decode()]()


@pytest.fixture(params=["gim", "standard"])
async def failing_server(request: pytest.FixtureRequest) -> AsyncIterator[aio.Channel]:
    server = rpc.new_server(request.param)
    handler = grpc.unary_unary_rpc_method_handler(_fail)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pb.Test", {"Fail": handler}),))
    port = rpc.bind(server, "127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(0)


async def _call(channel: aio.Channel, failure: str) -> aio.AioRpcError:
    method = channel.unary_unary("/pb.Test/Fail")
    with pytest.raises(aio.AioRpcError) as info:
        await method(failure.encode(), timeout=10)
    return info.value


def _gim_code(error: aio.AioRpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(GIM_CODE_KEY)


@pytest.mark.parametrize("failure", ["redis_down", "redis_loading", "redis_timeout", "database_gone"])
async def test_a_dependency_down_is_unavailable_with_10002(failing_server: aio.Channel, failure: str) -> None:
    error = await _call(failing_server, failure)
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert _gim_code(error) == str(int(Code.UNAVAILABLE))
    assert "retry" in (error.details() or "")
    assert "Lost connection" not in (error.details() or "")  # no internals
    assert isinstance(rpc.gim_error_of(error), GimError)


async def test_a_bug_is_internal_without_internals(failing_server: aio.Channel) -> None:
    error = await _call(failing_server, "bug")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    assert _gim_code(error) is None


async def test_a_burst_of_failures_is_one_line_per_kind(
    failing_server: aio.Channel, log_events: list[dict[str, Any]]
) -> None:
    calls = ["redis_down"] * 20 + ["database_gone"] * 20 + ["bug"] * 20
    errors = await asyncio.gather(*(_call(failing_server, f) for f in calls))
    assert [e.code() for e in errors].count(grpc.StatusCode.UNAVAILABLE) == 40
    unavailable = [e for e in log_events if e["event"] == "rpc_unavailable"]
    assert sorted(e["kind"] for e in unavailable) == ["database: OperationalError", "redis: ConnectionError"], (
        unavailable
    )
    bugs = [e for e in log_events if e["event"] == "rpc_failed"]
    assert len(bugs) == 1, bugs
    assert bugs[0]["exc_info"] is True  # the first of its kind has its traceback


async def test_a_refusal_is_its_gim_code_and_not_a_warning(
    failing_server: aio.Channel, log_events: list[dict[str, Any]]
) -> None:
    error = await _call(failing_server, "refused")
    assert _gim_code(error) == str(int(Code.USER_NOT_FOUND))
    assert error.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.NOT_FOUND)  # gim mode reads UNKNOWN in grpcio
    assert [e for e in log_events if e["log_level"] in ("warning", "error")] == []


async def test_summary_counts_what_it_did_not_log() -> None:
    from gim.pkg import log

    lines: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            lines.append((event, fields))

    summary = log.Summary(Recorder(), interval=0.05)
    for _ in range(5):
        summary.warning("redis_unreachable", kind="ConnectionError", n=1)
    assert len(lines) == 1
    async with asyncio.timeout(10):
        while len(lines) < 2:  # the interval ends: one line with the count
            await asyncio.sleep(0.01)
    assert lines[1][1]["repeated"] == 4


async def test_too_much_waiting_is_resource_exhausted(failing_server: aio.Channel) -> None:
    error = await _call(failing_server, "overloaded")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry later" in (error.details() or "")
