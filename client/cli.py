"""`gim client`: chat from a terminal, or send and listen from scripts.

    gim client --phone 18800000001                  interactive (type /help)
    gim client send --phone 18800000001 --to 2 hi   send one text message
    gim client listen --phone 18800000002 --count 1 print messages as they come

The defaults reach a server started by `make run` (its development code is 0000).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable

from grpc import aio

from gim.client.api import Credentials, GimApi
from gim.client.client import DEFAULT_LOGIC, DEFAULT_USER, DEFAULT_WS, Client, Timing
from gim.client.events import describe, text
from gim.pkg import log
from gim.pkg.config import ConfigError, split_host_port
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx

DEFAULTS = {
    "phone": None,
    "code": "0000",
    "device_id": None,
    "ws": False,
    "tcp": "127.0.0.1:8080",
    "ws_url": DEFAULT_WS,
    "logic": DEFAULT_LOGIC,
    "business": DEFAULT_USER,
}

HELP = """commands:
  /to USER text      send to a user (by user id); later lines without a command go there too
  /group GROUP text  send to a group
  /room ROOM         receive the messages of a room (0 leaves it)
  /friends           list your friends
  /groups            list your groups
  /quit              leave (Ctrl-D too)"""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `client` (with its `send` / `listen` commands) to the `gim` commands."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--phone", help="phone number to sign in with (required)")
    common.add_argument("--code", help="verification code (default 0000, the code of `make run`)")
    common.add_argument("--device-id", type=int, help="sign in on this device (default: register a new one)")
    common.add_argument("--ws", action="store_true", help="use the WebSocket long connection instead of TCP")
    common.add_argument("--tcp", help="connect TCP address (default 127.0.0.1:8080)")
    common.add_argument("--ws-url", help=f"connect WebSocket URL (default {DEFAULT_WS})")
    common.add_argument("--logic", help=f"LogicExt address (default {DEFAULT_LOGIC})")
    common.add_argument("--business", help=f"UserExt address (default {DEFAULT_USER})")
    parser = commands.add_parser(
        "client", parents=[common], help="chat from the terminal (or send / listen from scripts)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="client_command")
    send = sub.add_parser("send", parents=[common], help="send one text message and exit")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=int, help="receiver user id")
    target.add_argument("--group", type=int, help="receiver group id")
    send.add_argument("text", nargs="+", help="the message")
    listen = sub.add_parser("listen", parents=[common], help="print incoming messages, one per line")
    listen.add_argument("--count", type=int, default=0, help="exit after this many messages (default: never)")
    listen.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds (default: never)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    for key, value in DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if not args.phone:
        raise SystemExit("gim client: --phone is required")
    log.setup("warning")
    command = {"send": _send, "listen": _listen}.get(args.client_command or "", _chat)
    try:
        sys.exit(asyncio.run(command(args)))
    except (GimError, aio.AioRpcError, ConfigError, OSError, TimeoutError) as exc:
        raise SystemExit(f"gim client: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, GimError):
        return f"error {int(exc.code)}: {exc.message}"
    if isinstance(exc, aio.AioRpcError):
        hint = " (is the server running? `make run` starts one)" if exc.code().name == "UNAVAILABLE" else ""
        return f"{exc.code().name}: {exc.details()}{hint}"
    if isinstance(exc, TimeoutError):
        return "no long connection to connect within the time allowed (is connect running?)"
    return str(exc) or type(exc).__name__


def _client(args: argparse.Namespace, api: GimApi) -> Client:
    return Client(
        phone=args.phone,
        code=args.code,
        device_id=args.device_id,
        api=api,
        tcp=split_host_port(args.tcp, "--tcp"),
        ws_url=args.ws_url if args.ws else None,
        timing=Timing(heartbeat_interval=30.0),
    )


async def _send(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business)
    try:
        creds = await api.sign_in_by_phone(args.phone, args.code, args.device_id)
        receiver = (cx.RT_GROUP, args.group) if args.group else (cx.RT_USER, args.to)
        seq = await api.send_message(creds, *receiver, text(" ".join(args.text)))
        print(f"sent (seq {seq})", flush=True)
    finally:
        await api.close()
    return 0


async def _listen(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business)
    seen = 0
    try:
        async with _client(args, api) as client, asyncio.timeout(args.timeout or None):
            async for event in client:
                print(describe(event), flush=True)
                seen += 1
                if seen == args.count:
                    break
    except TimeoutError:
        pass
    finally:
        await api.close()
    return 0 if not args.count or seen >= args.count else 1


async def _chat(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business)
    try:
        async with _client(args, api) as client:
            me = await api.get_user(client.credentials, client.user_id)
            print(f"signed in as {me.nickname or 'user'} (user {client.user_id}, device "
                  f"{client.credentials.device_id}); /help lists the commands", flush=True)  # fmt: skip
            chat = Chat(client)
            jobs = [asyncio.create_task(chat.read_commands(_stdin_lines())), asyncio.create_task(chat.print_incoming())]
            try:
                done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
            for job in done:
                job.result()  # a refused sign-in ends the chat with its error
    finally:
        await api.close()
    return 0


def _stdin_lines() -> asyncio.Queue[str | None]:
    """Lines of stdin (None at the end), read by a daemon thread so that leaving never
    waits for a blocked read."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return lines


class Chat:
    """The interactive session: typed commands in, incoming messages out."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: set[int] = set()  # seqs of what this terminal sent: not printed back
        self.target: tuple[str, int] | None = None
        self.commands: dict[str, Callable[[str], Awaitable[None]]] = {
            "/to": self._to,
            "/group": self._group,
            "/room": self._room,
            "/friends": self._friends,
            "/groups": self._groups,
            "/help": self._help,
        }

    @property
    def creds(self) -> Credentials:
        return self.client.credentials

    async def print_incoming(self) -> None:
        async for event in self.client:
            if event.seq and event.seq in self.sent and event.sender.id == self.client.user_id:
                continue
            print(describe(event), flush=True)

    async def read_commands(self, lines: asyncio.Queue[str | None]) -> None:
        while (line := await lines.get()) is not None and line.strip() != "/quit":
            try:
                await self.handle(line.strip())
            except (GimError, aio.AioRpcError, ValueError) as exc:
                print(f"! {_reason(exc)}", flush=True)

    async def handle(self, line: str) -> None:
        if not line:
            return
        name, _, rest = line.partition(" ")
        if name in self.commands:
            await self.commands[name](rest.strip())
        elif line.startswith("/"):
            print(f"! unknown command {name}; /help lists them", flush=True)
        elif self.target is None:
            print("! no conversation yet: start one with /to USER text or /group GROUP text", flush=True)
        else:
            await self._send(self.target, line)

    async def _send(self, target: tuple[str, int], value: str) -> None:
        kind, ident = target
        if kind == "group":
            seq = await self.client.send_group_text(ident, value)
        else:
            seq = await self.client.send_text(ident, value)
        self.target = target
        self.sent.add(seq)
        print(f"> sent to {kind} {ident} (seq {seq})", flush=True)

    async def _to(self, rest: str) -> None:
        await self._send(*_target("user", rest))

    async def _group(self, rest: str) -> None:
        await self._send(*_target("group", rest))

    async def _room(self, rest: str) -> None:
        await self.client.subscribe_room(int(rest))
        print(f"> in room {rest}" if int(rest) else "> left the room", flush=True)

    async def _friends(self, _rest: str) -> None:
        friends = await self.client.api.get_friends(self.creds)
        for f in friends:
            print(f"  {f.user_id}  {f.nickname}  {f.remarks}".rstrip(), flush=True)
        print(f"> {len(friends)} friends", flush=True)

    async def _groups(self, _rest: str) -> None:
        groups = await self.client.api.get_groups(self.creds)
        for g in groups:
            print(f"  {g.group_id}  {g.name}  ({g.user_mum} members)", flush=True)
        print(f"> {len(groups)} groups", flush=True)

    async def _help(self, _rest: str) -> None:
        print(HELP, flush=True)


def _target(kind: str, rest: str) -> tuple[tuple[str, int], str]:
    ident, _, value = rest.partition(" ")
    if not ident.isdigit() or not value.strip():
        raise ValueError(f"usage: /{'to' if kind == 'user' else kind} {kind.upper()}_ID text")
    return (kind, int(ident)), value.strip()
