"""`Client`: a long connection kept alive, and the user's messages as an async iterator.

    async with Client(phone="18800000001", code="0000") as client:
        await client.send_text(other_user_id, "hello")
        async for event in client:
            print(event.sender.name, event.text)

It signs in (registering a device when it has only a phone number), opens the long
connection (TCP, or WebSocket with `ws_url`), signs in on it, syncs until `has_more` is
false, heartbeats, acks what the application took, and on any failure of the
connection reconnects with capped exponential backoff and syncs again from the last
seq it delivered. Events come out in seq order, each once (see `ordering.Sequencer`).

A token the server refuses (10000: expired, unknown, or replaced by a newer sign-in of
the device), at the long connection's sign-in or on a gRPC call made through the
client (`send*`, `call`): a client that has the phone number and code signs in again
over gRPC on the same device and carries on; one built with credentials alone ends the
iteration with that `GimError` (a call raises it), and nothing is retried.

Logging goes through the standard `logging` module under `gim.client`; nothing is
printed unless the application configures logging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

from google.protobuf.message import DecodeError
from grpc import aio
from websockets.exceptions import WebSocketException

from gim.client.api import Credentials, GimApi
from gim.client.backoff import Backoff
from gim.client.connection import LongConnection, ProtocolError, TcpConnection, WsConnection
from gim.client.events import Event, Message, event_of, text
from gim.client.ordering import RoomSeqs, Sequencer
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.security import client_ssl_context

_log = logging.getLogger("gim.client")

P = ParamSpec("P")
R = TypeVar("R")

# The addresses `make run` listens on.
DEFAULT_LOGIC = "127.0.0.1:50001"
DEFAULT_USER = "127.0.0.1:50301"
DEFAULT_TCP = ("127.0.0.1", 8080)
DEFAULT_WS = "ws://127.0.0.1:8081/ws"

# What makes a connection worth retrying (as opposed to a refusal or a bug).
RETRYABLE = (ConnectionError, OSError, TimeoutError, WebSocketException)


class TokenRefused(GimError):
    """The long connection's sign-in was answered 10000 for these credentials."""

    def __init__(self, credentials: Credentials, message: str) -> None:
        super().__init__(Code.UNAUTHORIZED, message)
        self.credentials = credentials


@dataclasses.dataclass(frozen=True)
class Timing:
    heartbeat_interval: float = 60.0  # well inside the server's idle timeout (11 min)
    heartbeat_timeout: float = 10.0  # no answer within this: the connection is dead
    request_timeout: float = 10.0  # connect + sign-in, each sync page, gRPC calls
    # Also sync every so often: a push the server could not deliver (say, while a connect
    # node restarted) is otherwise only found by the next gap or reconnect. None: never.
    resync_interval: float | None = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class _End:
    """Marks the end of the event stream."""


_END = _End()


def now_ms() -> int:
    return int(time.time() * 1000)


class Client:
    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        phone: str | None = None,
        code: str = "",
        device_id: int | None = None,
        logic_addr: str = DEFAULT_LOGIC,
        user_addr: str = DEFAULT_USER,
        tcp: tuple[str, int] | Sequence[tuple[str, int]] = DEFAULT_TCP,
        ws_url: str | Sequence[str] | None = None,
        last_seq: int | None = None,
        timing: Timing = Timing(),
        api: GimApi | None = None,
        tls: bool = False,
        ca_file: str | None = None,
    ) -> None:
        """`credentials`, or `phone` + `code` to sign in (on `device_id`, or a new device);
        both: start with `credentials` and sign in again with `phone` + `code` when the
        server refuses their token.

        `last_seq`: the highest seq the application already has (say, saved from
        `client.last_seq` last time); None starts after what any of the user's devices
        acknowledged. `api`: share one `GimApi` (not closed by this client).

        `tcp` is one `(host, port)` or a list of them, `ws_url` one URL or a list (used
        instead of `tcp`): the connect nodes to try in turn. The client stays on a node
        while it works and moves to the next one whenever a connection fails or a node
        refuses the sign-in because it is shutting down.

        `tls`: TCP and the gRPC ports speak TLS (give `wss://` URLs for WebSocket), their
        certificates checked against `ca_file` (the system's roots when None).
        """
        if credentials is None and not phone:
            raise ValueError("Client needs credentials or a phone number")
        self.api = api or GimApi(logic_addr, user_addr, timing.request_timeout, tls=tls, ca_file=ca_file)
        self._tls = client_ssl_context(ca_file) if tls else None
        self._own_api = api is None
        self._creds = credentials
        self._phone, self._code, self._device_id = phone, code, device_id
        self._renewing = asyncio.Lock()
        # Signed in again after a connect node refused the token, and no connect node has
        # accepted the new one yet: a second refusal ends the stream instead of looping.
        self._untried_token = False
        self.renewals = 0  # times the client signed in again because its token was refused
        self.last_error: BaseException | None = None  # why the last connection attempt failed
        self.endpoints = _endpoints(tcp, ws_url)
        self._at = 0  # index of the endpoint in use
        self.timing = timing
        self._backoff = Backoff(timing.backoff_initial, timing.backoff_max)
        self._seqs = Sequencer(last_seq)
        self._rooms = RoomSeqs()
        self._events: asyncio.Queue[Event | _End] = asyncio.Queue()
        self._consumed = last_seq or 0
        self._acked = 0  # the last ack sent on the current connection
        self._ack_wanted = asyncio.Event()
        self._sync_wanted = asyncio.Event()
        self._conn: LongConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        self.connected = asyncio.Event()  # set while signed in on a long connection
        self.sign_ins = 0  # successful long-connection sign-ins so far

    # -- life cycle --------------------------------------------------------------------

    @property
    def credentials(self) -> Credentials:
        if self._creds is None:
            raise RuntimeError("not signed in yet: call start() first")
        return self._creds

    @property
    def user_id(self) -> int:
        return self.credentials.user_id

    @property
    def last_seq(self) -> int:
        """The highest seq the application has taken (what to pass as `last_seq` next time)."""
        return self._consumed

    async def start(self, timeout: float | None = 30.0) -> None:
        """Sign in and wait for the first long-connection sign-in (retrying while unreachable)."""
        await self.sign_in()
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._runner = loop.create_task(self._run())
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._ready)

    async def close(self) -> None:
        """Ack what the application took, then close everything."""
        await self._flush_ack()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self._events.put_nowait(_END)
        if self._own_api:
            await self.api.close()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- events ------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        item = await self._events.get()
        if isinstance(item, _End):
            self._events.put_nowait(item)  # every later call ends too
            if self.failure is not None:
                raise self.failure
            raise StopAsyncIteration
        if isinstance(item, Message) and item.seq > self._consumed:
            self._consumed = item.seq
            self._ack_wanted.set()
        return item

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError if none comes within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            return await anext(self)

    def pending(self) -> int:
        """Events received and waiting for the application."""
        return self._events.qsize()

    # -- signing in again ----------------------------------------------------------------

    async def sign_in(self) -> Credentials:
        """The credentials, signing in over gRPC first when the client has none yet (what
        `start` does; alone, for an app that only makes calls)."""
        if self._creds is None:
            self._creds = await self._sign_in(self._device_id)
        return self._creds

    @property
    def can_sign_in(self) -> bool:
        """True when the client holds a phone number and code to sign in again by itself."""
        return bool(self._phone)

    async def _sign_in(self, device_id: int | None) -> Credentials:
        """Sign in over gRPC with the phone number and code, on `device_id` (None: a new
        device); a device the server does not know (10014) is replaced by a new one."""
        assert self._phone is not None
        try:
            return await self.api.sign_in_by_phone(self._phone, self._code, device_id)
        except GimError as exc:
            if exc.code != Code.DEVICE_NOT_FOUND or device_id is None:
                raise
            _log.warning("device %d is unknown to the server: registering a new device", device_id)
            return await self.api.sign_in_by_phone(self._phone, self._code, None)

    async def _renew(self, refused: Credentials) -> bool:
        """After the server refused the token of `refused`: sign in again on the same
        device. False when this client cannot (it has no phone number and code)."""
        if not self.can_sign_in:
            return False
        async with self._renewing:
            if self._creds is not refused:
                return True  # another caller already signed in again
            creds = await self._sign_in(refused.device_id)
            self._creds = creds
            self.renewals += 1
        _log.info("token refused: signed in again (user %d, device %d)", creds.user_id, creds.device_id)
        return True

    async def call(
        self, method: Callable[Concatenate[Credentials, P], Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`method(credentials, ...)`, a `GimApi` method with this client's credentials;
        when the token is refused (10000) and the client can sign in again, it does and
        calls once more.

            friends = await client.call(client.api.get_friends)
        """
        creds = self.credentials
        try:
            return await method(creds, *args, **kwargs)
        except GimError as exc:
            if exc.code != Code.UNAUTHORIZED or not await self._renew(creds):
                raise
        return await method(self.credentials, *args, **kwargs)

    # -- sending -----------------------------------------------------------------------

    async def send(
        self,
        receiver_type: int,
        receiver_id: int,
        content: bytes,
        message_type: int = cx.MT_TEXT,
        persist: bool = True,
        to_user_ids: Iterable[int] = (),
    ) -> int:
        """Send through LogicExt; returns this user's seq of the message (0 if not persisted).

        The sending device gets no push of its own message, so the client puts the sent
        message into its own stream itself, at that seq.
        """
        to_user_ids = list(to_user_ids)
        sent_at = now_ms()
        seq = await self.call(
            self.api.send_message, receiver_type, receiver_id, content, message_type, persist,
            to_user_ids=to_user_ids, send_time=sent_at,
        )  # fmt: skip
        if seq:
            own = cx.Message(
                sender=cx.Sender(sender_type=cx.ST_USER, sender_id=self.user_id),
                receiver_type=cast(cx.ReceiverType, receiver_type),
                receiver_id=receiver_id,
                to_user_ids=to_user_ids,
                message_type=cast(cx.MessageType, message_type),
                message_content=content,
                seq=seq,
                send_time=sent_at,
                status=cx.MS_NORMAL,
            )
            self._on_message(own)
        return seq

    async def send_text(self, user_id: int, value: str) -> int:
        return await self.send(cx.RT_USER, user_id, text(value))

    async def send_group_text(self, group_id: int, value: str) -> int:
        return await self.send(cx.RT_GROUP, group_id, text(value))

    # -- rooms -------------------------------------------------------------------------

    @property
    def room_id(self) -> int:
        """The room this client receives (0: none)."""
        return self._rooms.room_id

    async def subscribe_room(self, room_id: int) -> None:
        """Receive the room's messages (room_id 0: leave the room); kept across reconnects."""
        previous = self._rooms.room_id
        after = self._rooms.subscribe(room_id)
        conn = self._conn
        if conn is None:
            return  # subscribed when the connection is back
        try:
            await self._subscribe(conn, room_id, after)
        except GimError:
            self._rooms.subscribe(previous)
            raise

    async def _subscribe(self, conn: LongConnection, room_id: int, after: int) -> None:
        data = cx.SubscribeRoomInput(room_id=room_id, seq=after).SerializeToString()
        out = await conn.request(cx.PT_SUBSCRIBE_ROOM, data, self.timing.request_timeout)
        if out.code:
            raise _error(out)

    # -- the connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except TokenRefused as exc:
                if self._untried_token:  # refused right after signing in again: give up
                    self._refused(exc)
                    return
                if not await self._renew_or_fail(exc):
                    return
            except GimError as exc:  # the server refused us: retrying would not help
                self._refused(exc)
                return
            except RETRYABLE as exc:
                self.last_error = exc
                _log.info("connection to %s lost: %r", _show(self.endpoint), exc)
                self._at = (self._at + 1) % len(self.endpoints)
            except Exception as exc:
                _log.exception("client failed")
                self._fail(exc)
                return
            await asyncio.sleep(self._backoff.next())

    async def _renew_or_fail(self, exc: TokenRefused) -> bool:
        """Sign in again after a refused token; False (the stream ended) when that is
        not possible. A gRPC failure meanwhile (business restarting) is retried."""
        try:
            if await self._renew(exc.credentials):
                self._untried_token = True
                return True
            self._refused(exc)
        except GimError as error:
            self._refused(error)
        except (aio.AioRpcError, *RETRYABLE) as error:
            self.last_error = error
            _log.info("signing in again failed, will retry: %s", _rpc_reason(error))
            return True
        return False

    def _refused(self, exc: GimError) -> None:
        _log.warning("the server refused this client: error %d: %s", int(exc.code), exc.message)
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)
        self._events.put_nowait(_END)

    @property
    def endpoint(self) -> tuple[str, int] | str:
        """The connect node in use (or tried next): `(host, port)` or a WebSocket URL."""
        return self.endpoints[self._at]

    async def _open(self) -> LongConnection:
        endpoint = self.endpoint
        if isinstance(endpoint, str):
            secure = {"ssl": self._tls} if self._tls is not None and endpoint.startswith("wss:") else {}
            return await WsConnection.open(endpoint, open_timeout=self.timing.request_timeout, **secure)
        return await TcpConnection.open(*endpoint, ssl=self._tls)

    async def _session(self) -> None:
        """One long connection, from opening to its end (which always raises)."""
        creds = self.credentials
        async with asyncio.timeout(self.timing.request_timeout):
            conn = await self._open()
        try:
            out = await conn.sign_in(creds.user_id, creds.device_id, creds.token, self.timing.request_timeout)
            # 10001 at sign-in (2021 codes): this node is shutting down, or cannot reach logic
            # for now (the message says which); either way: back off, then the next node
            if out.code == Code.BAD_REQUEST:
                raise ConnectionRefusedError(f"sign-in refused: {out.message}")
            if out.code == Code.UNAUTHORIZED:
                raise TokenRefused(creds, out.message or "token refused")
            if out.code:
                raise _error(out)
            self._conn = conn
            self._untried_token = False
            self.sign_ins += 1
            self._backoff.reset()
            self.connected.set()
            _log.info(
                "signed in on %s (user %d, device %d, sign-in %d)",
                _show(self.endpoint), creds.user_id, creds.device_id, self.sign_ins,
            )  # fmt: skip
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            if self._rooms.room_id:
                await self._resubscribe(conn)
            self._seqs.needs_sync = True  # pushes may have been missed while away
            await self._serve(conn)
        finally:
            self.connected.clear()
            self._conn = None
            if self._seqs.syncing:
                self._seqs.abort_sync()
            await conn.close()

    async def _resubscribe(self, conn: LongConnection) -> None:
        try:
            await self._subscribe(conn, self._rooms.room_id, self._rooms.subscribe(self._rooms.room_id))
        except GimError as exc:
            _log.warning(
                "joining room %d again was refused: error %d: %s", self._rooms.room_id, int(exc.code), exc.message
            )

    async def _serve(self, conn: LongConnection) -> None:
        """Run the connection's jobs until one fails or the connection closes."""
        jobs: list[Coroutine[Any, Any, None]] = [
            self._pump(conn), self._syncer(conn), self._heartbeat(conn), self._acker(conn),
        ]  # fmt: skip
        if self.timing.resync_interval:
            jobs.append(self._resync_timer(self.timing.resync_interval))
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(job) for job in jobs]
        closed = loop.create_task(conn.closed.wait())
        try:
            done, _ = await asyncio.wait([*tasks, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, closed]:
                task.cancel()
            await asyncio.gather(*tasks, closed, return_exceptions=True)
        for task in done:
            if task is not closed and (exc := task.exception()) is not None:
                raise exc
        raise conn.error or ConnectionError("connection closed")

    async def _pump(self, conn: LongConnection) -> None:
        """Pushed packets: messages into the sequencer, stray errors into the log.

        An `Output` with a non-zero code is never a message, whatever its type (a server
        may answer a failed ack with a PT_MESSAGE carrying 10001 and no data)."""
        while True:
            out = await conn.pushes.get()
            if out.code:
                level = logging.DEBUG if out.type == cx.PT_MESSAGE else logging.WARNING
                _log.log(level, "ignored an error the server sent without a request: type %d, code %d: %s",
                         out.type, out.code, out.message)  # fmt: skip
                continue
            if out.type != cx.PT_MESSAGE:
                continue
            send = cx.MessageSend()
            try:
                send.ParseFromString(out.data)
            except DecodeError as exc:  # a frame we cannot trust
                raise ProtocolError(f"bad MessageSend: {exc}") from None
            self._on_message(send.message)

    def _on_message(self, message: cx.Message) -> None:
        if message.receiver_type == cx.RT_ROOM:
            if self._rooms.accept(message):
                self._events.put_nowait(event_of(message))
            return
        self._emit(self._seqs.push(message))
        if self._seqs.needs_sync:
            self._sync_wanted.set()

    def _emit(self, messages: list[cx.Message]) -> None:
        for message in messages:
            self._events.put_nowait(event_of(message))

    async def _syncer(self, conn: LongConnection) -> None:
        while True:
            while not self._seqs.needs_sync:
                self._sync_wanted.clear()
                await self._sync_wanted.wait()
            await self._sync(conn)

    async def _sync(self, conn: LongConnection) -> None:
        """PT_SYNC page by page until has_more is false; pushes meanwhile are held."""
        seq = self._seqs.begin_sync()
        while True:
            page = await conn.sync(seq, self.timing.request_timeout)
            self._emit(self._seqs.page(list(page.messages)))
            if not page.has_more:
                break
            if not page.messages:
                raise ProtocolError("sync answered has_more with an empty page")
            seq = page.messages[-1].seq
        self._emit(self._seqs.end_sync())

    async def _heartbeat(self, conn: LongConnection) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_interval)
            try:
                await conn.request(cx.PT_HEARTBEAT, timeout=self.timing.heartbeat_timeout)
            except TimeoutError:
                raise ConnectionError("no heartbeat answer in time") from None

    async def _resync_timer(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._seqs.needs_sync = True
            self._sync_wanted.set()

    async def _acker(self, conn: LongConnection) -> None:
        """Ack the highest seq the application took, whenever it grows."""
        self._acked = 0
        while True:
            if self._consumed > self._acked:
                self._acked = self._consumed
                await conn.ack(self._acked, now_ms())
            else:
                self._ack_wanted.clear()
                await self._ack_wanted.wait()

    async def _flush_ack(self) -> None:
        """Make sure the server has the last ack: acks have no answer, but packets are
        handled in order, so a heartbeat answered after it means it was handled."""
        conn = self._conn
        if conn is None or self._consumed == 0:
            return
        try:
            if self._consumed > self._acked:
                self._acked = self._consumed
                await conn.ack(self._acked, now_ms())
            await conn.request(cx.PT_HEARTBEAT, timeout=self.timing.heartbeat_timeout)
        except RETRYABLE as exc:
            _log.info("the final ack may not have reached the server: %r", exc)


def _endpoints(
    tcp: tuple[str, int] | Sequence[tuple[str, int]], ws_url: str | Sequence[str] | None
) -> list[tuple[str, int] | str]:
    """The connect nodes to try, in order: WebSocket URLs if given, else TCP addresses."""
    if ws_url:
        return [ws_url] if isinstance(ws_url, str) else list(ws_url)
    if tcp and isinstance(tcp[0], str):  # one (host, port)
        host, port = cast(tuple[str, int], tcp)
        return [(host, int(port))]
    found: list[tuple[str, int] | str] = [(host, int(port)) for host, port in cast(Sequence[tuple[str, int]], tcp)]
    if not found:
        raise ValueError("Client needs at least one connect address")
    return found


def _show(endpoint: tuple[str, int] | str) -> str:
    return endpoint if isinstance(endpoint, str) else f"{endpoint[0]}:{endpoint[1]}"


def _rpc_reason(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


def _error(out: cx.Output) -> GimError:
    try:
        code = Code(out.code)
    except ValueError:
        code = Code.BAD_REQUEST
    return GimError(code, out.message or f"refused with code {out.code}")
