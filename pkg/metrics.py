"""Prometheus metrics of a gim node: what they are, the gRPC interceptors that count every
call, and the HTTP listener (`metrics_listen`) that serves them on /metrics.

Every metric lives in prometheus-client's default registry, next to its process
collectors (CPU, memory, open descriptors). Labels are bounded sets only: gRPC service,
method and status code, a transport, an outcome, a receiver type, and for the delivery
lanes the connect node (as many as the deployment has); never a user or a device.
docs/operations.md lists every metric with its meaning.

Code elsewhere calls the objects below in one line (`metrics.LOGIC_SENDS.labels("user").inc()`);
values that already live in some object (open connections, queue depths) are read at
scrape time through `live(...)`, not kept twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from grpc import aio
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gim.pkg import handlers, log
from gim.pkg.errors import GIM_CODE_KEY, Code

_log = log.get("metrics")
# no `_created` series beside every counter: nothing on a dashboard uses them
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

# seconds: from a cached read (~0.1 ms) to a call that waits for a slow peer (5 s timeout)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# -- gRPC (every server and every channel between nodes) ----------------------------------

GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled_total", "gRPC calls this node answered", ["grpc_service", "grpc_method", "grpc_code"]
)
GRPC_SERVER_SECONDS = Histogram(
    "grpc_server_handling_seconds", "time to answer a gRPC call", ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
GRPC_CLIENT_HANDLED = Counter(
    "grpc_client_handled_total", "gRPC calls this node made to its peers", ["grpc_service", "grpc_method", "grpc_code"]
)
GRPC_CLIENT_SECONDS = Histogram(
    "grpc_client_handling_seconds", "time until a peer answered a gRPC call", ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip

# -- connect ---------------------------------------------------------------------------------

CONNECT_SIGN_INS = Counter(
    "gim_connect_sign_ins_total",
    "long-connection sign-ins logic answered, by result (ok, the refusal's gim code name, unreachable)", ["result"],
)  # fmt: skip


class WireTally:
    """Frames and bytes of the long connections in one direction of one transport, as
    plain integers: every frame passes here, and an addition costs a tenth of a
    Counter's locked increment. Reported as the counters gim_connect_frames_total and
    gim_connect_bytes_total at scrape time (`_Wire`)."""

    __slots__ = ("frames", "bytes")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def add(self, size: int, frames: int = 1) -> None:
        self.frames += frames
        self.bytes += size


TCP_IN, TCP_OUT, WS_IN, WS_OUT = WireTally(), WireTally(), WireTally(), WireTally()
_WIRE = {("tcp", "in"): TCP_IN, ("tcp", "out"): TCP_OUT, ("ws", "in"): WS_IN, ("ws", "out"): WS_OUT}


class _Wire(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["transport", "direction"]
        frames = CounterMetricFamily("gim_connect_frames", "long-connection frames", labels=labels)
        sizes = CounterMetricFamily(
            "gim_connect_bytes", "long-connection bytes (TCP: with frame headers)", labels=labels
        )
        for key, tally in _WIRE.items():
            frames.add_metric(list(key), tally.frames)
            sizes.add_metric(list(key), tally.bytes)
        yield frames
        yield sizes


REGISTRY.register(_Wire())
CONNECT_WRITE_BUFFER_DROPS = Counter(
    "gim_connect_write_buffer_drops_total", "connections closed because the client did not read (write buffer full)",
    ["transport"],
)  # fmt: skip
CONNECT_EVICTIONS = Counter("gim_connect_evictions_total", "connections closed after the idle timeout")
CONNECT_SYNC_PAGES = Counter(
    "gim_connect_sync_pages_total", "sync answers given to clients, by where they came from (logic, read_ahead, connect: nothing to fetch)",
    ["source"],
)  # fmt: skip
CONNECT_PUSHES = Counter(
    "gim_connect_pushes_total", "messages logic handed this node for its devices, by outcome", ["outcome"]
)

# -- logic -------------------------------------------------------------------------------------

LOGIC_SENDS = Counter("gim_logic_sends_total", "messages sent, by receiver type", ["receiver_type"])
LOGIC_STORE_BATCH = Histogram(
    "gim_logic_store_batch_messages", "messages stored per database transaction", buckets=SIZE_BUCKETS
)
LOGIC_STORE_SECONDS = Histogram(
    "gim_logic_store_transaction_seconds", "time of one store transaction (seqs and rows)", buckets=LATENCY_BUCKETS
)
LOGIC_SEQ_SECONDS = Histogram(
    "gim_logic_seq_allocation_seconds", "time to allocate the seqs of one batch", buckets=LATENCY_BUCKETS
)
LOGIC_DELIVERIES = Counter(
    "gim_logic_deliveries_total",
    "messages handed to connect nodes, by outcome (delivered; absent: the node has no such connection; failed)",
    ["outcome"],
)
LOGIC_SYNC_PAGES = Counter("gim_logic_sync_pages_total", "sync answers, by whether more pages follow", ["has_more"])
CACHE_LOOKUPS = Counter("gim_cache_lookups_total", "Redis cache look-ups, by kind and result", ["kind", "result"])

# -- business ---------------------------------------------------------------------------------

BUSINESS_SIGN_INS = Counter(
    "gim_business_sign_ins_total", "SignIn calls by outcome (ok, or the refusal's gim code)", ["outcome"]
)
BUSINESS_TOKEN_CHECKS = Counter("gim_business_token_checks_total", "token checks by outcome", ["outcome"])


def count_lookups(kind: str, hits: int, misses: int) -> None:
    if hits:
        CACHE_LOOKUPS.labels(kind, "hit").inc(hits)
    if misses:
        CACHE_LOOKUPS.labels(kind, "miss").inc(misses)


def sign_in_result(outcome: object) -> str:
    """A long-connection sign-in's `result` label from how logic's answer went
    (`pkg.protocol.actions.Outcome`): ok, the gim code's name, or the outcome's kind
    (unreachable, nodestopping, failed)."""
    from gim.pkg.protocol.actions import Answered, Refused

    if isinstance(outcome, Answered):
        return "ok"
    if isinstance(outcome, Refused):
        with contextlib.suppress(ValueError):
            return Code(outcome.code).name
        return "refused"
    return type(outcome).__name__.lower()


def count_deliveries(handed: int, delivered: int) -> int:
    """Count `delivered` of `handed` deliveries to a connect node (the rest: no such
    connection there); returns `delivered`."""
    LOGIC_DELIVERIES.labels("delivered").inc(delivered)
    if handed > delivered:
        LOGIC_DELIVERIES.labels("absent").inc(handed - delivered)
    return delivered


def outcome_of(error: BaseException | None) -> str:
    """An outcome label: "ok", a gim code's name (e.g. "UNAUTHORIZED"), or "error"."""
    if error is None:
        return "ok"
    code = getattr(error, "code", None)
    return code.name if isinstance(code, enum.Enum) else "error"


@contextlib.contextmanager
def counting(counter: Counter) -> Iterator[None]:
    """Count what the block does in `counter` by outcome (`outcome_of`), errors re-raised."""
    try:
        yield
    except Exception as exc:
        counter.labels(outcome_of(exc)).inc()
        raise
    counter.labels("ok").inc()


# -- values read at scrape time -------------------------------------------------------------

Samples = Iterable[tuple[tuple[str, ...], float]]


class _Live(Collector):
    """Gauges whose values are read from live objects at scrape time. Each source is held
    weakly: a server that is gone stops reporting; several in one process are summed."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, tuple[str, ...], weakref.WeakKeyDictionary[Any, Any]]] = {}

    def add(self, name: str, doc: str, labels: tuple[str, ...], owner: object, read: Callable[[Any], Samples]) -> None:
        self._gauges.setdefault(name, (doc, labels, weakref.WeakKeyDictionary()))[2][owner] = read

    def declare(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        """A gauge shown (empty) before any source reports it."""
        self._gauges.setdefault(name, (doc, labels, weakref.WeakKeyDictionary()))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (doc, labels, sources) in list(self._gauges.items()):
            totals: dict[tuple[str, ...], float] = {}
            for owner, read in list(sources.items()):
                try:
                    for values, value in read(owner):
                        totals[values] = totals.get(values, 0.0) + value
                except Exception as exc:  # a scrape must not fail for one source
                    _log.warning("metric_read_failed", metric=name, error=repr(exc))
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for values, value in sorted(totals.items()):
                family.add_metric(list(values), value)
            yield family


_LIVE = _Live()
REGISTRY.register(_LIVE)
for _name, _doc, _labels in (
    ("gim_connect_connections", "open long connections, by transport and state", ("transport", "state")),
    ("gim_connect_rooms", "rooms with members on this node", ()),
    ("gim_connect_room_members", "room memberships on this node", ()),
    ("gim_logic_store_queue_rows", "message rows waiting to be stored", ()),
    ("gim_logic_delivery_queue", "delivery batches waiting for each connect node", ("node",)),
):
    _LIVE.declare(_name, _doc, _labels)


def live(name: str, doc: str, owner: object, read: Callable[[Any], Samples], labels: tuple[str, ...] = ()) -> None:
    """Report `read(owner)` (label values -> value pairs) as gauge `name` while `owner` lives."""
    _LIVE.add(name, doc, labels, owner, read)


def transport_of(session: object) -> str:
    """A connection's transport label: "tcp" or "ws" (from its transport's class)."""
    name = type(getattr(session, "transport", None)).__name__.lower()
    return "ws" if name.startswith("ws") else "tcp" if name.startswith("tcp") else "other"


# -- the gRPC interceptors -------------------------------------------------------------------


def split_method(method: str) -> tuple[str, str]:
    """'/pb.LogicExt/SendMessage' -> ('pb.LogicExt', 'SendMessage')."""
    _, service, name = (method.split("/") + ["", ""])[:3]
    return service or "unknown", name or "unknown"


class ServerMetrics(aio.ServerInterceptor):
    """Counts every unary call a server answers (by method and status code) and times it;
    binds the call's request_id, user_id and device_id (metadata; for a call between
    nodes without them, the request's own user_id and device_id fields) to every log line
    it causes (structlog contextvars). Runs first, so it sees what the other interceptors
    answer too (a refused secret, an error turned into a status)."""

    async def intercept_service(
        self, continuation: handlers.Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> handlers.Handler | None:
        handler = await continuation(handler_call_details)
        inner = handlers.unary_of(handler)
        if handler is None or inner is None:
            return handler
        service, method = split_method(handler_call_details.method)
        ids = log.call_ids(handler_call_details.invocation_metadata)

        async def counted(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                with log.bound(**(ids or log.request_ids(request))):
                    response = await inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except BaseException:
                code = grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.UNKNOWN
                raise
            finally:
                label = code_label(code, context.trailing_metadata())
                GRPC_SERVER_HANDLED.labels(service, method, label).inc()
                GRPC_SERVER_SECONDS.labels(service, method).observe(time.perf_counter() - start)

        return handlers.answered_by(handler, counted)


@contextlib.contextmanager
def client_call(method: object) -> Iterator[None]:
    """Count and time the call to `method` (a grpc.aio multicallable) that the block makes,
    once it ended. Calls are counted where they are made (`rpc.call`, the push lanes), not
    by a client interceptor: grpc.aio runs an intercepted call through a task of its own,
    which cost more than the call's own client-side work."""
    # a multicallable keeps its '/package.Service/Method' path in `_method` (grpcio is
    # pinned to the minor version this is tested with)
    path = getattr(method, "_method", b"/unknown/unknown")
    service, name = split_method(path.decode() if isinstance(path, bytes) else str(path))
    started = time.perf_counter()
    code: Any = grpc.StatusCode.OK
    trailers: Any = ()
    try:
        yield
    except aio.AioRpcError as exc:
        code, trailers = exc.code(), exc.trailing_metadata()
        raise
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        code = grpc.StatusCode.UNKNOWN
        raise
    finally:
        GRPC_CLIENT_SECONDS.labels(service, name).observe(time.perf_counter() - started)
        GRPC_CLIENT_HANDLED.labels(service, name, code_label(code, trailers)).inc()


def code_label(code: Any, trailers: Any) -> str:
    """A call's `grpc_code` label: the name of the gim code its `gim-code` trailer carries
    (e.g. WRONG_CODE; the same in both `grpc_status` modes), else the status's name."""
    for key, value in trailers or ():
        if key == GIM_CODE_KEY:
            with contextlib.suppress(ValueError):
                return Code(int(value)).name
    return str(getattr(code, "name", code))


# -- the HTTP listener -----------------------------------------------------------------------


class MetricsListener:
    """/metrics over HTTP on `listen` (host:port; port 0 picks one) in a thread of its own,
    so a scrape is answered even while the event loop is busy."""

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None

    def start(self, listen: str) -> int:
        from gim.pkg.config import split_host_port

        host, port = split_host_port(listen, "metrics_listen")
        self._server, _ = start_http_server(port, addr=host)
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
