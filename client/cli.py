"""`gim client`: chat from a terminal, or send and listen from scripts.

    gim client --phone 18800000001                  interactive (type /help)
    gim client send --phone 18800000001 --to 2 hi   send one text message
    gim client listen --phone 18800000002 --count 1 print messages as they come

The defaults reach a server started by `make run` (its development code is 0000).
Each installation keeps one device per server and phone number in a small state file
(`--state`), and signs in again by itself when the server no longer knows its token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from grpc import aio

from gim.client.api import Credentials, GimApi
from gim.client.chat import HELP, Chat
from gim.client.client import DEFAULT_LOGIC, DEFAULT_USER, DEFAULT_WS, Client, Timing
from gim.client.events import describe, text
from gim.client.state import Device, StateFile, default_path
from gim.client.terminal import LineSource, line_source
from gim.pkg import log
from gim.pkg.errors import GimError
from gim.pkg.pb import connect_ext_pb2 as cx

_log = logging.getLogger("gim.client.cli")

# How long to try reaching connect, and the gRPC deadline: a wrong address fails in
# seconds, not after the SDK's patient defaults.
CONNECT_TIMEOUT = 5.0

DEFAULTS = {
    "phone": None,
    "code": "0000",
    "device_id": None,
    "ws": False,
    "tcp": "127.0.0.1:8080",
    "ws_url": DEFAULT_WS,
    "logic": DEFAULT_LOGIC,
    "business": DEFAULT_USER,
    "tls": False,
    "ca": None,
    "state": None,
    "verbose": 0,
}

PHONE = re.compile(r"\+?[0-9]{5,15}")


class BadArguments(ValueError):
    """A command-line value that cannot work; the message names the option."""


class CannotConnect(ConnectionError):
    """No connect node answered within `CONNECT_TIMEOUT`."""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # a private generic of argparse
    """Add `client` (with its `send` / `listen` commands) to the `gim` commands."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--phone", help="phone number to sign in with (required): digits, optionally a leading +")
    common.add_argument("--code", help="verification code (default 0000, the code of `make run`)")
    common.add_argument("--device-id", type=int, help="sign in on this device (default: this installation's own)")
    common.add_argument("--ws", action="store_true", help="use the WebSocket long connection instead of TCP")
    common.add_argument("--tcp", help="connect TCP address (default 127.0.0.1:8080)")
    common.add_argument("--ws-url", help=f"connect WebSocket URL (default {DEFAULT_WS})")
    common.add_argument("--logic", help=f"LogicExt address (default {DEFAULT_LOGIC})")
    common.add_argument("--business", help=f"UserExt address (default {DEFAULT_USER})")
    common.add_argument(
        "--tls", action="store_true", help="the server speaks TLS (TCP, gRPC; with --ws give a wss:// --ws-url)"
    )
    common.add_argument(
        "--ca", metavar="FILE", help="with --tls: PEM CA certificate(s) to trust (default: the system's)"
    )
    common.add_argument("--state", help=f"file remembering this installation's device (default {default_path()})")
    common.add_argument("-v", "--verbose", action="count", help="log to stderr: -v what happens, -vv everything")
    parser = commands.add_parser(
        "client", parents=[common], help="chat from the terminal (or send / listen from scripts)",
        description=__doc__ + "\n" + HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
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
    setup_logging(args.verbose)
    try:
        check_arguments(args)
    except BadArguments as exc:
        raise SystemExit(f"gim client: {exc}") from None
    command = {"send": _send, "listen": _listen}.get(args.client_command or "", _chat)
    try:
        sys.exit(asyncio.run(command(args)))
    except (GimError, aio.AioRpcError, OSError, TimeoutError) as exc:
        raise SystemExit(f"gim client: {_reason(exc)}") from None
    except KeyboardInterrupt:
        sys.exit(130)


# -- arguments and logging ---------------------------------------------------------------


def check_arguments(args: argparse.Namespace) -> None:
    if not args.phone:
        raise BadArguments("--phone is required (the number you sign in with, e.g. --phone 18800000001)")
    if not PHONE.fullmatch(args.phone):
        raise BadArguments(f"--phone: expected 5 to 15 digits, optionally after a +, got {args.phone!r}")
    for option, value in (("--tcp", args.tcp), ("--logic", args.logic), ("--business", args.business)):
        address(value, option)
    if args.ws and not re.fullmatch(r"wss?://[^\s/]+.*", args.ws_url):
        raise BadArguments(f"--ws-url: expected ws://HOST:PORT/PATH, got {args.ws_url!r}")
    if args.tls and args.ws and not args.ws_url.startswith("wss://"):
        raise BadArguments(f"--tls with --ws: expected a wss:// --ws-url, got {args.ws_url!r}")
    if args.ca and not args.tls:
        raise BadArguments("--ca is for --tls: add --tls")
    if args.ca and not os.access(args.ca, os.R_OK):
        raise BadArguments(f"--ca: cannot read {args.ca!r}")
    if args.device_id is not None and args.device_id <= 0:
        raise BadArguments(f"--device-id: expected a positive number, got {args.device_id}")
    if args.client_command == "listen" and (args.count < 0 or args.timeout < 0):
        raise BadArguments("--count and --timeout must not be negative")


def address(value: str, option: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') with a port from 1 to 65535."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or " " in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArguments(f"{option}: expected HOST:PORT with a port from 1 to 65535, got {value!r}")
    return host, int(port)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """Writes to whatever `sys.stderr` is now (the prompt replaces it while it is open)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(verbose: int) -> None:
    """Warnings and errors to stderr; -v adds what happens (INFO), -vv everything."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    log.setup(logging.getLevelName(level).lower())  # the shared gim code logs through structlog


def _reason(exc: BaseException) -> str:
    if isinstance(exc, GimError):
        return f"error {int(exc.code)}: {exc.message}"
    if isinstance(exc, aio.AioRpcError):
        hint = (
            " (is the server running? `make run` starts one)"
            if exc.code().name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
            else ""
        )
        return f"{exc.code().name}: {exc.details()}{hint}"
    if isinstance(exc, OSError) and exc.errno and not isinstance(exc, CannotConnect):
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's wording
    return str(exc) or type(exc).__name__


# -- signing in with this installation's device -------------------------------------------


class Account:
    """The phone number on this server, with the device this installation keeps for it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = args.logic
        self.state: StateFile | None = None
        self.claimed: set[int] = set()
        if args.device_id is None:  # an explicit device is the caller's business
            self.state = StateFile(Path(args.state) if args.state else default_path())

    def client(self, api: GimApi) -> Client:
        args = self.args
        device = Device(args.device_id) if args.device_id is not None else self._claim()
        creds = None
        if device is not None and device.token and device.user_id:
            creds = Credentials(device.user_id, device.device_id, device.token)
        return Client(
            credentials=creds,
            phone=args.phone,
            code=args.code,
            device_id=device.device_id if device else None,
            api=api,
            tcp=address(args.tcp, "--tcp"),
            ws_url=args.ws_url if args.ws else None,
            tls=args.tls,
            ca_file=args.ca,
            timing=Timing(heartbeat_interval=30.0, request_timeout=CONNECT_TIMEOUT),
        )

    def _claim(self) -> Device | None:
        if self.state is None:
            return None
        try:
            device = self.state.claim(self.server, self.args.phone)
        except OSError as exc:
            _log.warning("state file %s not usable (%s): this run registers a new device", self.state.path, exc)
            self.state = None
            return None
        if device is not None:
            self.claimed.add(device.device_id)
        return device

    def remember(self, client: Client, held: bool = True) -> None:
        """Keep the client's device and token for the next run (`held`: still in use)."""
        if self.state is None:
            return
        try:
            creds = client.credentials
        except RuntimeError:  # never signed in
            creds = None
        try:
            if not held and self.claimed - ({creds.device_id} if creds else set()):
                self.state.release(self.server, self.args.phone, self.claimed)
            if creds is not None:
                self.state.keep(self.server, self.args.phone, Device(creds.device_id, creds.user_id, creds.token), held)
        except OSError as exc:
            _log.warning("state file %s not written (%s)", self.state.path, exc)


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace, api: GimApi) -> AsyncIterator[Client]:
    """A started client on this installation's device, remembered for the next run."""
    account = Account(args)
    client = account.client(api)
    try:
        try:
            await client.start(timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            where = args.ws_url if args.ws else args.tcp
            why = f" ({_reason(client.last_error)})" if client.last_error else ""
            raise CannotConnect(
                f"cannot reach connect at {where} within {CONNECT_TIMEOUT:g} s{why}; is the server running?"
            ) from None
        account.remember(client)
        yield client
    finally:
        await client.close()
        account.remember(client, held=False)


# -- the commands ------------------------------------------------------------------------


async def _send(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business, CONNECT_TIMEOUT, tls=args.tls, ca_file=args.ca)
    account = Account(args)
    client = account.client(api)
    try:
        await client.sign_in()
        receiver = (cx.RT_GROUP, args.group) if args.group else (cx.RT_USER, args.to)
        seq = await client.call(api.send_message, *receiver, text(" ".join(args.text)))
        print(f"sent (seq {seq})", flush=True)
    finally:
        await client.close()
        account.remember(client, held=False)
        await api.close()
    return 0


async def _my_nickname(client: Client) -> str:
    return str((await client.call(client.api.get_user, client.user_id)).nickname)


async def _listen(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business, CONNECT_TIMEOUT, tls=args.tls, ca_file=args.ca)
    seen = 0
    try:
        async with connected(args, api) as client, asyncio.timeout(args.timeout or None):
            nickname = await _my_nickname(client)
            async for event in client:
                print(describe(event, client.user_id, nickname), flush=True)
                seen += 1
                if seen == args.count:
                    break
    except TimeoutError:
        pass
    finally:
        await api.close()
    return 0 if not args.count or seen >= args.count else 1


async def _chat(args: argparse.Namespace) -> int:
    api = GimApi(args.logic, args.business, CONNECT_TIMEOUT, tls=args.tls, ca_file=args.ca)
    try:
        async with connected(args, api) as client:
            chat = Chat(client, await _my_nickname(client), say=lambda line: print(line, flush=True))
            lines = line_source([*chat.commands, "/quit"], _history_path(args))
            chat.say(f"signed in as {chat.nickname or 'user ' + str(client.user_id)} (user {client.user_id}, "
                     f"device {client.credentials.device_id}); /help lists the commands")  # fmt: skip
            with lines.output():
                await _converse(chat, lines)
    finally:
        await api.close()
    return 0


def _history_path(args: argparse.Namespace) -> Path:
    state = Path(args.state) if args.state else default_path()
    return state.with_name("history")


async def _converse(chat: Chat, lines: LineSource) -> None:
    """Typed lines and incoming messages until /quit, the end of input or a refusal."""

    async def commands() -> None:
        while (line := await lines.read()) is not None and await chat.handle(line):
            pass

    jobs = [asyncio.create_task(commands()), asyncio.create_task(chat.print_incoming())]
    try:
        done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
    for job in done:
        job.result()  # a refused sign-in ends the chat with its error
