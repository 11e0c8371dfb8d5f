"""gRPC plumbing shared by the services: the error interceptor, servers, channels,
metadata, and turning a peer's `gim-code` trailer back into a `GimError`."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Sequence
from typing import Any

import grpc
from grpc import aio
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_exc

from gim.pkg import handlers, log, metrics
from gim.pkg.errors import GIM_CODE_KEY, Code, GimError, Overloaded, grpc_status, unauthorized, unavailable
from gim.pkg.health import NodeHealth, Probe
from gim.pkg.security import PLAINTEXT, Outbound, Security

_log = log.get("rpc")

# Keepalive: every channel pings its idle connections every KEEPALIVE_MS, calls or not, so
# that a peer that vanished without closing its sockets (a killed node, a dropped NAT
# mapping) is noticed within KEEPALIVE_MS + 10 s instead of at the next call. gRPC's
# defaults would stop that after 2 pings without data ("grpc.http2.max_pings_without_data")
# and the servers would refuse it; SERVER_OPTIONS below is the other half.
KEEPALIVE_MS = 30_000

CHANNEL_OPTIONS = [
    ("grpc.lb_policy_name", "round_robin"),
    # a peer that restarts is reached again within a second, not after minutes of backoff
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging an idle connection
]


def dependency_down(exc: BaseException) -> str | None:
    """Which dependency `exc` says is down or not ready ("redis", "database"), if any:
    a failure to retry later, not a bug."""
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):  # BusyLoadingError too
        return "redis"
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return "database"
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "database"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "a dependency"
    return None


class ErrorInterceptor(aio.ServerInterceptor):
    """The one place where errors become gRPC statuses.

    - `GimError` -> its status in `status_mode` (see `errors.grpc_status`) plus the
      `gim-code` trailer;
    - a dependency that is down or loading (Redis, the database) -> UNAVAILABLE with
      gim code 10002: retry;
    - `Overloaded` (too much already waiting) -> RESOURCE_EXHAUSTED;
    - a peer service's failure without a gim code -> its status, without its details;
    - anything else is a bug: INTERNAL "internal error", without internals.
    Failures are logged summarised (`log.Summary`): one line per kind per interval with
    a count, a bug's traceback once per interval, never a traceback per call.
    """

    def __init__(self, status_mode: str = "gim") -> None:
        self.status_mode = status_mode
        self.failures = log.Summary(_log)

    async def intercept_service(
        self, continuation: handlers.Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> handlers.Handler | None:
        handler = await continuation(handler_call_details)
        inner = handlers.unary_of(handler)
        if handler is None or inner is None:
            return handler
        method = handler_call_details.method

        async def guarded(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except (asyncio.CancelledError, aio.AbortError):
                raise
            except Exception as exc:
                await context.abort(*self.answer(exc, method))

        return handlers.answered_by(handler, guarded)

    def answer(self, exc: Exception, method: str) -> tuple[Any, str, tuple[tuple[str, str], ...]]:
        """The status, message and trailers that answer a call that raised `exc`."""
        if isinstance(exc, GimError) and exc.code == Code.UNAVAILABLE:
            self.failures.warning("rpc_unavailable", kind=exc.message, method=method)
        elif isinstance(exc, GimError):
            _log.info("rpc_rejected", method=method, code=int(exc.code), reason=exc.message)
        elif isinstance(exc, Overloaded):
            self.failures.warning("rpc_overloaded", kind=str(exc), method=method)
            return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc) or "overloaded, retry later", ()
        elif isinstance(exc, NotImplementedError):
            return grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet", ()
        elif isinstance(exc, aio.AioRpcError):  # a peer we depend on failed: pass its status on
            self.failures.warning("rpc_dependency_failed", kind=exc.code().name, method=method, reason=exc.details())
            return exc.code(), f"a service this call depends on failed ({exc.code().name})", ()
        elif (dependency := dependency_down(exc)) is not None:
            self.failures.warning(
                "rpc_unavailable", kind=f"{dependency}: {type(exc).__name__}", method=method, error=str(exc)
            )
            exc = unavailable(dependency)
        else:
            self.failures.exception("rpc_failed", kind=f"{method}: {type(exc).__name__}", method=method)
            return grpc.StatusCode.INTERNAL, "internal error", ()
        return grpc_status(exc.code, self.status_mode), exc.message, ((GIM_CODE_KEY, str(int(exc.code))),)


# A burst of calls queues instead of being shed: gRPC's default cancels calls beyond 1,000
# not yet taken up by the server (the caller sees CANCELLED, which says nothing).
MAX_PENDING_CALLS = 20_000
# Beyond this many calls in progress a server answers RESOURCE_EXHAUSTED ("try later").
MAX_CONCURRENT_CALLS = 10_000

SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # Accept the channels' keepalive (CHANNEL_OPTIONS). By default a gRPC server takes a
    # ping without calls in flight as a "strike" (it expects one every 2 hours at most, 5
    # minutes with calls) and after 2 strikes closes the connection with GOAWAY
    # ENHANCE_YOUR_CALM "too_many_pings", which grpc prints in every idle client's terminal
    # (issue 14). So: pings without calls are fine, as often as every third of the
    # channels' interval (room for timer jitter); a peer pinging faster than that still
    # gets 2 strikes and then GOAWAY.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 3),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
]


LISTEN_HINT = (
    "the address is in use or not one of this host's. A port inside the kernel's ephemeral range "
    "(net.ipv4.ip_local_port_range) can also be held for a minute by an outgoing connection that used "
    "it; reserve the service ports with net.ipv4.ip_local_reserved_ports, or listen on another port"
)


def new_server(
    status_mode: str = "gim", interceptors: Sequence[aio.ServerInterceptor] = (), *, reuse_port: bool = False
) -> aio.Server:
    """A gRPC server whose gim errors go out in `status_mode` ("gim" or "standard");
    `interceptors` (a private server's secret check) run before anything else but the
    metrics and log binding of every call (`metrics.ServerMetrics`). `reuse_port`:
    SO_REUSEPORT on its listener, so that several processes (workers) share its port."""
    options = [(key, int(reuse_port) if key == "grpc.so_reuseport" else value) for key, value in SERVER_OPTIONS]
    return aio.server(
        interceptors=[metrics.ServerMetrics(), *interceptors, ErrorInterceptor(status_mode)],
        options=options,
        maximum_concurrent_rpcs=MAX_CONCURRENT_CALLS,
    )


def bind(server: aio.Server, addr: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Listen on `addr` (port 0 picks a free one), with TLS when `credentials` are given;
    returns the bound port."""
    try:
        port = server.add_secure_port(addr, credentials) if credentials else server.add_insecure_port(addr)
    except RuntimeError:  # grpc's way of saying the bind failed (it does not say why)
        port = 0
    if port == 0:
        raise OSError(errno.EADDRINUSE, f"cannot listen on {addr}: {LISTEN_HINT}")
    return port


def target(addr: str) -> str:
    """The gRPC target for a peer address setting.

    One `host:port` (a DNS name resolving to several addresses reaches all of them), or a
    comma-separated list of `IP:port` peers (`10.0.0.1:50000,10.0.0.2:50000`). Calls are
    balanced round-robin over whatever the target resolves to, skipping peers that are down.
    """
    peers = [p.strip() for p in addr.split(",") if p.strip()]
    if len(peers) <= 1:
        return peers[0] if peers else addr
    for peer in peers:
        host = peer.rsplit(":", 1)[0].strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"peer list {addr!r}: {peer!r} is not IP:port; list IP addresses, "
                "or give one DNS name that resolves to every peer"
            ) from None
    scheme = "ipv6" if peers[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(peers)}"


# How this process calls other nodes' private ports unless told otherwise: set once at
# start from the configuration (pkg/service.serve -> `configure`).
_outbound: Outbound = PLAINTEXT


def configure(outbound: Outbound) -> None:
    """Make `outbound` (TLS credentials, internal secret) the default of `channel`."""
    global _outbound
    _outbound = outbound


def channel(addr: str, *, private: bool = False, outbound: Outbound | None = None) -> aio.Channel:
    """A channel to `addr` (see `target`), speaking TLS and carrying the internal secret as
    `outbound` says (default: this process's, see `configure`). `private`: its own
    connections, not shared with other channels to the same address, so that closing it
    and opening a new one really connects afresh (gRPC otherwise reuses a shared
    connection still in reconnect backoff)."""
    how = _outbound if outbound is None else outbound
    options = CHANNEL_OPTIONS + ([("grpc.use_local_subchannel_pool", 1)] if private else []) + how.options()
    interceptors = how.interceptors()  # calls are counted where they are made (`call`): no interceptor
    if how.credentials is not None:
        return aio.secure_channel(target(addr), how.credentials, options=options, interceptors=interceptors)
    return aio.insecure_channel(target(addr), options=options, interceptors=interceptors)


def gim_error_of(exc: aio.AioRpcError) -> GimError | None:
    """The `GimError` a peer raised: from its `gim-code` trailer first, then from the
    status code itself when that is a gim number (grpcio reads a status outside the
    standard set as UNKNOWN, so for Python callers the trailer is what tells); None if
    neither names a gim code."""
    for key, value in exc.trailing_metadata() or ():
        if key == GIM_CODE_KEY:
            return _gim_error(value, exc)
    return _gim_error(exc.code().value[0], exc)


def _gim_error(number: str | bytes | int, exc: aio.AioRpcError) -> GimError | None:
    try:
        return GimError(Code(int(number)), exc.details() or "")
    except (TypeError, ValueError):
        return None


async def call(
    method: Any, request: Any, timeout: float, metadata: Sequence[tuple[str, str]] = (), *, wait_for_ready: bool = False
) -> Any:
    """Call a unary method of a peer, re-raising its gim errors as `GimError`.

    `wait_for_ready`: wait (within `timeout`) for a peer to be reachable instead of
    failing at once while the channel is between connection attempts, so that a peer
    that is starting or restarting costs the caller latency, not an error. Services use
    it between each other; a caller that should hear at once that nobody answers (a
    command-line client, a node shutting down) does not."""
    try:
        with metrics.client_call(method):
            return await method(request, timeout=timeout, metadata=metadata or None, wait_for_ready=wait_for_ready)
    except aio.AioRpcError as exc:
        error = gim_error_of(exc)
        if error is not None:
            raise error from None
        raise


def metadata_of(context: aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def identity_of(context: aio.ServicerContext[Any, Any]) -> tuple[int, int, str, int]:
    """(user_id, device_id, token, request_id) from the call's metadata; 10000 if one is
    missing or not positive, 10001 if an id is beyond int64 (no such id can exist)."""
    md = metadata_of(context)
    try:
        user_id = int(md["user_id"])
        device_id = int(md["device_id"])
        token = md["token"]
    except (KeyError, ValueError):
        raise unauthorized("metadata user_id, device_id and token are required") from None
    if user_id <= 0 or device_id <= 0 or not token:
        raise unauthorized("metadata user_id, device_id and token are required")
    if user_id >= 2**63 or device_id >= 2**63:
        raise GimError(Code.BAD_REQUEST, "metadata user_id and device_id must be 64-bit numbers (below 2**63)")
    return user_id, device_id, token, request_id_of(context)


def request_id_of(context: aio.ServicerContext[Any, Any]) -> int:
    """The optional `request_id` metadata; 10001 if it is not a 64-bit signed number (its column's range)."""
    value = metadata_of(context).get("request_id", "0") or "0"
    try:
        request_id = int(value)
    except ValueError:
        raise GimError(Code.BAD_REQUEST, f"request_id must be a number, got {value!r}") from None
    if not -(2**63) <= request_id < 2**63:
        raise GimError(Code.BAD_REQUEST, f"request_id must be a 64-bit signed number, got {value[:40]}")
    return request_id


class ServerPair:
    """A service's two gRPC servers: `int` (other gim services, private network) and
    `ext` (apps and business backends), bound and stopped together, with health checking
    on both (`health`; see `expose`)."""

    def __init__(self, status_mode: str = "gim", security: Security | None = None, *, reuse_port: bool = False) -> None:
        security = security if security is not None else Security()
        self.security = security
        self.int = new_server(status_mode, security.server_interceptors("int"))
        self.ext = new_server(status_mode, reuse_port=reuse_port)  # `ext` only: `int` is each node's own
        self.int_port = 0
        self.ext_port = 0
        self.health = NodeHealth()

    def expose(
        self, int_services: list[str], ext_services: list[str], *, reflection: bool, probe: Probe, drain_seconds: float
    ) -> None:
        """Health checking for these services on each server (NOT_SERVING while `probe`
        fails, and for `drain_seconds` of a stop); server reflection on `ext`."""
        self.health.probe, self.health.drain_seconds = probe, drain_seconds
        self.health.serve(self.int, int_services)
        self.health.serve(self.ext, ext_services, reflect=reflection)

    async def start(self, int_listen: str, ext_listen: str) -> None:
        self.int_port = bind(self.int, int_listen, self.security.server_credentials("int"))
        self.ext_port = bind(self.ext, ext_listen, self.security.server_credentials("ext"))
        await self.int.start()
        await self.ext.start()
        await self.health.start()

    async def stop(self, grace: float) -> None:
        await self.health.drain()  # NOT_SERVING, still answering for drain_seconds
        await self.ext.stop(grace)
        await self.int.stop(grace)


class ServesPair:
    """Mixed into business and logic: their ports are those of their `ServerPair`."""

    _grpc: ServerPair

    @property
    def int_port(self) -> int:
        return self._grpc.int_port

    @property
    def ext_port(self) -> int:
        return self._grpc.ext_port
