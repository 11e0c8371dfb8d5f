"""Many lean long connections in one process: an `asyncio.Protocol` each, no task each.

`Fleet.open` connects and signs in devices with bounded concurrency; pushed messages go
straight into the fleet's `Accounting` and latency samples; `request` sends one packet
and waits for its answer (heartbeat, sync, subscribe).

A client behaves as the SDK and 2021 clients do (`Behaviour`): once signed in it syncs
from its position and shows (counts as delivered) every message of the answer, page by
page; it acks each message it is given (pushed or synced; room messages are not acked);
it sends a heartbeat every `heartbeat_interval` seconds, the first at a random moment
within one interval so a fleet's heartbeats are spread. A connect or sign-in that fails
in a way the SDK retries (refused, reset, timed out, answered 10001) is tried again as the
SDK does (`Retry`): after a capped, jittered backoff, at the next endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import socket
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gim.bench import messages
from gim.bench.accounting import Accounting
from gim.client.backoff import Backoff
from gim.client.client import Timing
from gim.pkg.errors import Code
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol import client_framing
from gim.pkg.protocol.packets import input_body

SDK_HEARTBEAT_INTERVAL = Timing().heartbeat_interval  # 60 s


@dataclasses.dataclass(frozen=True)
class Retry:
    """How a device whose connect or sign-in fails tries again: the SDK's backoff and
    timeouts (`gim.client.client.Timing`), bounded to `attempts` in all."""

    attempts: int = 5  # worst case about 10 s of backoff (0.5 + 1 + 2 + 4 s, less jitter)
    timeout: float = Timing().request_timeout  # for the connect, then for the sign-in answer
    backoff_initial: float = Timing().backoff_initial
    backoff_max: float = Timing().backoff_max


class RefusedError(Exception):
    """The server answered a request with an error code."""


class TryAgainError(RefusedError):
    """A sign-in answered 10001: the node is stopping or cannot reach logic; clients retry."""


# The failures of a connect or sign-in that a client retries (as the SDK's RETRYABLE;
# WsClosed: a WebSocket handshake refused, say 429 or 503, or closed by the server)
RETRYABLE = (OSError, TimeoutError, client_framing.WsClosed, TryAgainError)


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """What the clients do besides receiving: the SDK's defaults; off only to compare."""

    ack: bool = True  # ack each message given to the application
    heartbeat_interval: float = SDK_HEARTBEAT_INTERVAL  # 0: no periodic heartbeats
    request_id: bool = True  # senders put a unique request_id on every call (not the fleet's)


QUIET = Behaviour(ack=False, heartbeat_interval=0.0, request_id=False)  # for the ceilings' minimal servers


@dataclasses.dataclass(frozen=True)
class Device:
    user_id: int
    device_id: int
    token: str


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a client connects: TCP (host, port) or a WebSocket URL, from `source` (an IP)."""

    host: str
    port: int
    ws_url: str = ""
    source: str = ""


class LeanClient(asyncio.Protocol):
    def __init__(self, fleet: Fleet, device: Device, framing: client_framing.Framing) -> None:
        self.fleet = fleet
        self.device = device
        self.framing = framing
        self.transport: asyncio.Transport | None = None
        self.signed_in: asyncio.Future[messages.Reply] = fleet.loop.create_future()
        self.closed: asyncio.Future[None] = fleet.loop.create_future()
        self.synced: asyncio.Future[None] = fleet.loop.create_future()  # the sync after sign-in answered, every page
        self._waiting: dict[int, asyncio.Future[messages.Reply]] = {}
        self._ids = itertools.count(2)
        self._ws_open = False
        self._heartbeat_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        opening = self.framing.opening()
        if opening:
            transport.write(opening)  # WebSocket handshake first; sign in once it is open
        else:
            self._sign_in()

    def _sign_in(self) -> None:
        d = self.device
        self._waiting[1] = self.signed_in
        self.signed_in.add_done_callback(self._sync_after_sign_in)
        self._write(messages.sign_in_body(d.user_id, d.device_id, d.token))

    def _sync_after_sign_in(self, signed_in: asyncio.Future[messages.Reply]) -> None:
        """As every client does once signed in (connect holds its pushes until then): sync
        from the device's position (`Fleet.sync_from`; a new device's is 0)."""
        if not signed_in.cancelled() and signed_in.exception() is None and not signed_in.result().code:
            self._sync(self.fleet.sync_from.get(self.device.device_id, 0))
            interval = self.fleet.behaviour.heartbeat_interval
            if interval > 0:
                self._heartbeat_timer = self.fleet.loop.call_later(random.uniform(0, interval), self._heartbeat)

    def _sync(self, seq: int) -> None:
        """One PT_SYNC page from `seq`; its answer is handled by `_synced` (not awaited)."""
        request_id = next(self._ids)
        page: asyncio.Future[messages.Reply] = self.fleet.loop.create_future()
        page.add_done_callback(self._synced)
        self._waiting[request_id] = page
        self._write(input_body(cx.PT_SYNC, request_id, cx.SyncInput(seq=seq).SerializeToString()))

    def _synced(self, page: asyncio.Future[messages.Reply]) -> None:
        """A sync answer: its messages are shown (delivered) and acked, as a client does;
        the next page is asked for while it says has_more."""
        if page.cancelled() or page.exception() is not None or page.result().code:
            self._caught_up()
            return
        out = cx.SyncOutput.FromString(page.result().data)
        self.fleet.sync_pages += 1
        if not out.messages:
            self._caught_up()
            return
        now = time.time_ns()
        for message in out.messages:
            self.fleet.on_push(self.device.device_id, messages.pushed(message), now)
        last = out.messages[-1].seq
        if self.fleet.behaviour.ack:
            self._write(messages.ack_body(last, now // 1_000_000))
        if out.has_more:
            self._sync(last)
        else:
            self._caught_up()

    def _caught_up(self) -> None:
        if not self.synced.done():
            self.synced.set_result(None)

    def _heartbeat(self) -> None:
        """One heartbeat now (its round trip is recorded), the next one interval later."""
        if self.transport is None or self.transport.is_closing():
            return
        request_id = next(self._ids)
        answer: asyncio.Future[messages.Reply] = self.fleet.loop.create_future()
        sent = time.perf_counter_ns()
        answer.add_done_callback(lambda f: self.fleet.on_heartbeat(f, sent))
        self._waiting[request_id] = answer
        self._write(input_body(cx.PT_HEARTBEAT, request_id))
        self._heartbeat_timer = self.fleet.loop.call_later(self.fleet.behaviour.heartbeat_interval, self._heartbeat)

    def _write(self, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.framing.frame(body))

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.framing.feed(data)
        except Exception as exc:
            self._fail(exc)
            return
        if isinstance(self.framing, client_framing.WsFraming):
            pending = self.framing.take_pending()
            if pending and self.transport is not None:
                self.transport.write(pending)
            if not self._ws_open:
                self._ws_open = True
                self._sign_in()
        now = time.time_ns()
        parse = self.fleet.downstream.parse
        ack = self.fleet.behaviour.ack
        for body in bodies:
            event = parse(body)
            if type(event) is messages.Pushed:
                self.fleet.on_push(self.device.device_id, event, now)
                if ack and not event.room:
                    self._write(messages.ack_body(event.seq, now // 1_000_000))
            else:
                waiter = self._waiting.pop(event.request_id, None)  # type: ignore[union-attr]
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        self._fail(exc or ConnectionResetError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.fleet.lost_connections += 1

    def _fail(self, exc: BaseException) -> None:
        waiters: list[asyncio.Future[Any]] = [self.signed_in, self.synced, *self._waiting.values()]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: a closed idle client is not an error by itself
        self._waiting.clear()
        if self.transport is not None:
            self.transport.abort()

    async def request(self, package_type: int, data: bytes = b"") -> messages.Reply:
        request_id = next(self._ids)
        waiter = self.fleet.loop.create_future()
        self._waiting[request_id] = waiter
        self._write(input_body(package_type, request_id, data))
        reply: messages.Reply = await waiter
        if reply.code:
            raise RefusedError(f"{reply.code}: {reply.message}")
        return reply

    def close(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        if self.transport is not None:
            self.transport.abort()


class Fleet:
    """Clients of one process; deliveries counted in `accounting`, latencies in ns."""

    def __init__(self, accounting: Accounting | None = None, behaviour: Behaviour = Behaviour()) -> None:
        self.loop = asyncio.get_running_loop()
        self.behaviour = behaviour
        self.sync_from: dict[int, int] = {}  # device id -> the seq its first sync starts from (default 0)
        self.heartbeat_rtts = array("q")  # ns, the periodic heartbeats' round trips
        self.heartbeat_failures = 0
        self.sync_pages = 0  # sync answers received
        self.accounting = accounting or Accounting()
        self.downstream = messages.Downstream()
        self.clients: list[LeanClient] = []
        self.latencies = array("q")  # ns from send to arrival, one per bench delivery
        self.last_arrival: dict[int, int] = {}  # tag -> latest arrival (ns)
        self.lost_connections = 0
        self.refused_sign_ins = 0  # sign-ins answered with an error code
        self.sign_in_retries = 0  # attempts after a device's first one
        self.retry_reasons: Counter[str] = Counter()  # why the retried attempts failed
        self.delivered = 0
        self._target = 0
        self._reached: asyncio.Event | None = None

    def on_push(self, device_id: int, event: messages.Pushed, now_ns: int) -> None:
        self.accounting.delivered(device_id, event.seq)
        if event.sent_ns:
            self.latencies.append(now_ns - event.sent_ns)
            if now_ns > self.last_arrival.get(event.tag, 0):
                self.last_arrival[event.tag] = now_ns
        self.delivered += 1
        if self.delivered >= self._target and self._reached is not None:
            self._reached.set()

    def on_heartbeat(self, answer: asyncio.Future[messages.Reply], sent_ns: int) -> None:
        if answer.cancelled() or answer.exception() is not None or answer.result().code:
            self.heartbeat_failures += 1
        else:
            self.heartbeat_rtts.append(time.perf_counter_ns() - sent_ns)

    async def connect(self, device: Device, endpoint: Endpoint) -> LeanClient:
        framing: client_framing.Framing = (
            client_framing.WsFraming(endpoint.ws_url) if endpoint.ws_url else client_framing.TcpFraming()
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.source:
                # port chosen at connect time, per destination: more than 28k sockets per source IP
                sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
                sock.bind((endpoint.source, 0))
            await self.loop.sock_connect(sock, (endpoint.host, endpoint.port))
        except BaseException:
            sock.close()
            raise
        _, client = await self.loop.create_connection(lambda: LeanClient(self, device, framing), sock=sock)
        self.clients.append(client)
        return client

    async def sign_in(
        self,
        device: Device,
        endpoints: Sequence[Endpoint],
        first: int = 0,
        gate: asyncio.Semaphore | None = None,
        retry: Retry = Retry(),
    ) -> LeanClient:
        """Connect `device` to `endpoints[first]` and sign it in. A failure a client retries
        (`RETRYABLE`) is tried again as the SDK does: after a backoff (the gate released
        meanwhile), at the next endpoint, `retry.attempts` times in all; then, or on a
        refusal no client retries (`RefusedError`), the last failure is raised."""
        backoff = Backoff(retry.backoff_initial, retry.backoff_max)
        for attempt in range(retry.attempts):
            if attempt:
                self.sign_in_retries += 1
                await asyncio.sleep(backoff.next())
            async with gate or contextlib.nullcontext():
                try:
                    return await self._sign_in_once(
                        device, endpoints[(first + attempt) % len(endpoints)], retry.timeout
                    )
                except RETRYABLE as exc:
                    if attempt == retry.attempts - 1:
                        raise
                    self.retry_reasons[failure_reason(exc)] += 1
        raise AssertionError("unreachable")

    async def _sign_in_once(self, device: Device, endpoint: Endpoint, timeout: float) -> LeanClient:
        async with asyncio.timeout(timeout):
            client = await self.connect(device, endpoint)
        try:
            async with asyncio.timeout(timeout):
                reply = await client.signed_in
            if reply.code:
                self.refused_sign_ins += 1
                error = TryAgainError if reply.code == Code.BAD_REQUEST else RefusedError
                raise error(f"{reply.code} {reply.message}")
        except BaseException:
            client.close()
            self.clients.remove(client)
            raise
        return client

    async def open(
        self,
        devices: Sequence[Device],
        endpoints: Sequence[Endpoint],
        concurrency: int = 200,
        timeout: float = 60.0,
        retry: Retry = Retry(),
    ) -> list[LeanClient]:
        """Connect and sign in every device (device i at endpoint i % len, retried as
        `sign_in` does), each ready once its first sync is answered; all or an error."""
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int, device: Device) -> LeanClient:
            client = await self.sign_in(device, endpoints, i, gate, retry)
            await client.synced  # ready, as a client is once its first sync is done
            return client

        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(devices))))

    async def subscribe_room(self, clients: Sequence[LeanClient], room_id: int, concurrency: int = 500) -> None:
        data = cx.SubscribeRoomInput(room_id=room_id).SerializeToString()
        gate = asyncio.Semaphore(concurrency)

        async def one(client: LeanClient) -> None:
            async with gate:
                await client.request(cx.PT_SUBSCRIBE_ROOM, data)

        await asyncio.gather(*(one(c) for c in clients))

    async def heartbeats(self, clients: Sequence[LeanClient], spread: float) -> array[int]:
        """One heartbeat per client, started evenly over `spread` seconds; round trips in ns."""
        rtts = array("q")
        step = spread / max(len(clients), 1)
        start = self.loop.time()

        async def one(i: int, client: LeanClient) -> None:
            await asyncio.sleep(max(0.0, start + i * step - self.loop.time()))
            t0 = time.perf_counter_ns()
            await client.request(cx.PT_HEARTBEAT)
            rtts.append(time.perf_counter_ns() - t0)

        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        return rtts

    async def wait_delivered(self, timeout: float) -> bool:
        """Until as many deliveries as expected pairs have arrived, or `timeout` (False)."""
        return await self.wait_count(self.accounting.expected_count(), timeout)

    async def wait_count(self, target: int, timeout: float) -> bool:
        """Until `target` deliveries in all have arrived, or `timeout` (then False)."""
        self._target = target
        self._reached = asyncio.Event()
        if self.delivered >= target:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._reached.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._reached = None

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()


def failure_reason(exc: BaseException) -> str:
    """A short label for why a connect or sign-in failed: the refusal's code and message,
    else the exception's type."""
    return str(exc)[:80] if isinstance(exc, RefusedError) else type(exc).__name__
