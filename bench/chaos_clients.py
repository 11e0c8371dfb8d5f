"""The receivers of `gim bench chaos`: 2021-style raw TCP clients and SDK clients.

`RawReceiver` does what a client written for the 2021 server does and nothing more: it
signs in (2-byte length frames), syncs from the highest seq it has shown (every page),
heartbeats, acks each push, shows every message in arrival order (pushes and sync
pages alike), and when the connection breaks it connects to the other connect node, signs
in and syncs again. `SdkReceiver` runs a `gim.client.Client` (phone + code) and shows
what `async for` yields. Both record their screen (`Shown`) and when they were signed
in (`Presence`); content is `Text("chaos <tag>")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence

from gim.bench.chaos_verdict import Presence, Shown
from gim.client import Client, Timing
from gim.client.api import GimApi
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.frames import FrameDecoder, encode_frame

HEARTBEAT = 5.0  # seconds between heartbeats
REQUEST_TIMEOUT = 10.0  # sign-in, each sync page, heartbeat answers
RECONNECT_PAUSE = 0.2  # seconds before connecting again (to the other node)
PREFIX = "chaos "


def content(tag: int) -> bytes:
    return cx.Text(text=f"{PREFIX}{tag}").SerializeToString()


def tag_of(message_type: int, data: bytes) -> int:
    """The tag of a chaos message, -1 for anything else."""
    if message_type != cx.MT_TEXT:
        return -1
    try:
        value = cx.Text.FromString(data).text
    except Exception:
        return -1
    return int(value[len(PREFIX) :]) if value.startswith(PREFIX) and value[len(PREFIX) :].isdigit() else -1


class Refused(Exception):
    """The server answered a request with an error code."""


class RawReceiver:
    """A 2021-style client of one device (see the module docstring)."""

    def __init__(self, index: int, user_id: int, device_id: int, token: str, endpoints: Sequence[tuple[str, int]]):
        self.index = index
        self.user_id, self.device_id, self.token = user_id, device_id, token
        self.endpoints = list(endpoints)
        self.at = index % len(self.endpoints)  # the node to try first
        self.screen: list[Shown] = []
        self.presence = Presence()
        self.highest = 0
        self.refusals: dict[str, int] = {}
        self._conns = itertools.count(1)
        self._conn_no = 0
        self._ids = itertools.count(2)
        self._waiting: dict[int, asyncio.Future[cx.Output]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._signed_in = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_signed_in(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._signed_in.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._close()

    async def final_sync(self, timeout: float) -> None:
        """Sync once more from the highest seq shown (on the current connection, or the
        next one if it is down)."""
        async with asyncio.timeout(timeout):
            while True:
                await self._signed_in.wait()
                try:
                    await self._sync("final")
                    return
                except (Refused, ConnectionError, TimeoutError):
                    await asyncio.sleep(RECONNECT_PAUSE)

    # -- the connection loop ---------------------------------------------------------

    async def _run(self) -> None:
        while True:
            host, port = self.endpoints[self.at]
            try:
                await self._session(host, port)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, Refused) as exc:
                why = type(exc).__name__ if not isinstance(exc, Refused) else str(exc)[:60]
                self.refusals[why] = self.refusals.get(why, 0) + 1
            finally:
                self._signed_in.clear()
                self.presence.down(time.monotonic())
                self._close()
            self.at = (self.at + 1) % len(self.endpoints)  # like a 2021 client: the other node
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _session(self, host: str, port: int) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), REQUEST_TIMEOUT)
        self._writer = writer
        self._conn_no = next(self._conns)
        reading = asyncio.get_running_loop().create_task(self._read(reader))
        try:
            data = cx.SignInInput(user_id=self.user_id, device_id=self.device_id, token=self.token)
            await self._request(cx.PT_SIGN_IN, data.SerializeToString(), request_id=1)
            self.presence.up(time.monotonic())
            self._signed_in.set()
            await self._sync("sync")
            while not reading.done():
                done, _ = await asyncio.wait({reading}, timeout=HEARTBEAT)
                if not done:
                    await self._request(cx.PT_HEARTBEAT)
            reading.result()  # raises why the connection ended
            raise ConnectionResetError("connection closed by the server")
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        try:
            while chunk := await reader.read(65536):
                for body in decoder.feed(chunk):
                    self._on_output(cx.Output.FromString(body))
            raise ConnectionResetError("connection closed by the server")
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionResetError("connection lost"))
            self._waiting.clear()

    def _on_output(self, out: cx.Output) -> None:
        if out.type == cx.PT_MESSAGE and out.request_id == 0:  # 2021: every PT_MESSAGE is a push
            message = cx.MessageSend.FromString(out.data).message
            self._show(message, "push")
            self._write(cx.PT_MESSAGE, cx.MessageACK(device_ack=message.seq, receive_time=_ms()).SerializeToString())
            return
        waiter = self._waiting.pop(out.request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(out)

    def _show(self, message: cx.Message, via: str) -> None:
        tag = tag_of(message.message_type, message.message_content)
        self.screen.append(Shown(tag, message.seq, time.monotonic(), via, self._conn_no))
        self.highest = max(self.highest, message.seq)

    async def _sync(self, via: str) -> None:
        while True:
            out = await self._request(cx.PT_SYNC, cx.SyncInput(seq=self.highest).SerializeToString())
            page = cx.SyncOutput.FromString(out.data)
            for message in page.messages:
                self._show(message, via)
            if page.messages:
                ack = cx.MessageACK(device_ack=self.highest, receive_time=_ms())
                self._write(cx.PT_MESSAGE, ack.SerializeToString())
            if not page.has_more or not page.messages:
                return

    async def _request(self, package_type: int, data: bytes = b"", request_id: int = 0) -> cx.Output:
        request_id = request_id or next(self._ids)
        waiter: asyncio.Future[cx.Output] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        self._write(package_type, data, request_id)
        out = await asyncio.wait_for(waiter, REQUEST_TIMEOUT)
        if out.code:
            raise Refused(f"{out.code} {out.message}")
        return out

    def _write(self, package_type: int, data: bytes, request_id: int = 0) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionResetError("not connected")
        body = cx.Input(type=package_type, request_id=request_id, data=data).SerializeToString()  # type: ignore[arg-type]
        self._writer.write(encode_frame(body))

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _ms() -> int:
    return int(time.time() * 1000)


SAMPLE_EVERY = 0.05  # seconds: how often an SDK client's connection state is looked at


class SdkReceiver:
    """A `gim.client.Client` signed in with phone + code on a known device."""

    def __init__(
        self, index: int, phone: str, code: str, device_id: int, api: GimApi, endpoints: Sequence[tuple[str, int]]
    ) -> None:
        self.index = index
        self.phone, self.code, self.device_id = phone, code, device_id
        self.api = api
        self.endpoints = [*endpoints[index % len(endpoints) :], *endpoints[: index % len(endpoints)]]
        self.screen: list[Shown] = []
        self.presence = Presence()
        self.client: Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._run = 0

    def _client(self, last_seq: int | None) -> Client:
        timing = Timing(heartbeat_interval=HEARTBEAT, heartbeat_timeout=REQUEST_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                        backoff_initial=0.1, backoff_max=1.0)  # fmt: skip
        return Client(
            phone=self.phone, code=self.code, device_id=self.device_id, api=self.api, tcp=self.endpoints,
            last_seq=last_seq, timing=timing,
        )  # fmt: skip

    async def start(self, timeout: float, last_seq: int | None = None, via: str = "sdk") -> None:
        self._run += 1
        client = self.client = self._client(last_seq)
        await client.start(timeout=timeout)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(client, via)), loop.create_task(self._watch(client))]

    async def _consume(self, client: Client, via: str) -> None:
        run = self._run
        async for event in client:
            tag = tag_of(event.message_type, event.raw)
            self.screen.append(Shown(tag, event.seq, time.monotonic(), via, run))

    async def _watch(self, client: Client) -> None:
        """Sign-ins and drops of the client's connection, as they are seen."""
        sign_ins = -1
        while True:
            now = time.monotonic()
            if client.connected.is_set() and client.sign_ins != sign_ins:
                if sign_ins >= 0:
                    self.presence.down(now)  # a reconnect between two looks
                sign_ins = client.sign_ins
                self.presence.up(now)
            elif not client.connected.is_set():
                self.presence.down(now)
            await asyncio.sleep(SAMPLE_EVERY)

    @property
    def last_seq(self) -> int:
        return self.client.last_seq if self.client is not None else 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), REQUEST_TIMEOUT)
        self.presence.down(time.monotonic())

    async def final_sync(self, timeout: float) -> None:
        """A fresh client on the same device from the last seq taken: its sync brings
        whatever the first one never got."""
        last = self.last_seq
        await self.stop()
        await self.start(timeout, last_seq=last, via="final")
