"""`gim client` as a person or a script uses it: real subprocesses against the cluster,
typed at through pipes (the prompt is for terminals; see test_client_terminal.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.redis_client import free_port

if TYPE_CHECKING:
    from gimtest.callables import SdkClients
    from gimtest.cluster import Cluster


pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

GIM = str(Path(sys.executable).with_name("gim"))
WAIT = 30.0  # bound on any single wait for output


def phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


def flags(cluster: Cluster, state: Path) -> list[str]:
    host, port = cluster.tcp
    return [
        "--tcp", f"{host}:{port}", "--ws-url", cluster.ws_url, "--state", str(state),
        "--logic", f"127.0.0.1:{cluster.logic.ext_port}", "--business", f"127.0.0.1:{cluster.business.ext_port}",
    ]  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "client.json"


async def gim_client(*args: str, stdin: bytes | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """Run `gim client ARGS`; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        GIM, "client", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), err.decode()


async def user_id_of(cluster: Cluster, number: str) -> int:
    device_id = await cluster.api.register_device()
    return (await cluster.api.sign_in(number, "0000", device_id)).user_id  # type: ignore[no-any-return]


class Terminal:
    """One interactive `gim client`: `type` lines into it, `expect` what it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self.user_id = 0
        self.device_id = 0

    @property
    def output(self) -> str:
        return "".join(self.seen)

    async def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines).encode())
        await self.proc.stdin.drain()

    async def expect(self, pattern: str) -> re.Match[str]:
        """The first line from here on matching `pattern` (a regular expression)."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    assert line, f"gim client ended while waiting for {pattern!r}:\n{self.output}"
                    self.seen.append(line)
                    if found := re.search(pattern, line.rstrip("\n")):
                        return found
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r} within {WAIT} s:\n{self.output}") from None

    async def quit(self) -> str:
        """Type /quit; everything the session printed. It must end with exit code 0."""
        await self.type("/quit")
        async with asyncio.timeout(WAIT):
            rest, _ = await self.proc.communicate()
        self.seen.append(rest.decode())
        assert self.proc.returncode == 0, self.output
        return self.output


@contextlib.asynccontextmanager
async def terminal(cluster: Cluster, state: Path, number: str | None = None) -> AsyncIterator[Terminal]:
    """`gim client` typed at by a person, signed in; killed if left running."""
    proc = await asyncio.create_subprocess_exec(
        GIM, "client", "--phone", number or phone(), *flags(cluster, state),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    term = Terminal(proc)
    try:
        found = await term.expect(r"\(user (\d+), device (\d+)\); /help lists the commands")
        term.user_id, term.device_id = int(found[1]), int(found[2])
        yield term
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- scripts: send and listen --------------------------------------------------------------


async def test_send_then_listen(cluster: Cluster, state: Path) -> None:
    alice, bob = phone(), phone()
    bob_id = await user_id_of(cluster, bob)
    code, out, err = await gim_client(
        "send", "--phone", alice, "--to", str(bob_id), "hello", "from", "cli", *flags(cluster, state)
    )
    assert code == 0 and out == "sent (seq 1)\n", out + err
    code, out, err = await gim_client(
        "listen", "--phone", bob, "--count", "1", "--timeout", "30", *flags(cluster, state)
    )
    assert code == 0, out + err
    assert "hello from cli" in out and out.count("\n") == 1, out
    # nothing more arrives: a timeout with fewer than --count messages exits 1
    code, out, err = await gim_client(
        "listen", "--phone", bob, "--ws", "--count", "1", "--timeout", "0.5", *flags(cluster, state)
    )
    assert (code, out) == (1, ""), out + err


async def test_logs_go_to_stderr_and_only_when_asked(cluster: Cluster, state: Path) -> None:
    (alice,) = await cluster.new_user()
    bob = phone()
    bob_id = await user_id_of(cluster, bob)
    await cluster.api.send_message(alice, cx.RT_USER, bob_id, cx.Text(text="one").SerializeToString())
    await cluster.api.send_message(alice, cx.RT_USER, bob_id, cx.Text(text="two").SerializeToString())
    code, out, err = await gim_client("listen", "--phone", bob, "--count", "1", *flags(cluster, state))
    assert code == 0 and out.count("\n") == 1 and ": one" in out, out + err
    assert "signed in" not in out + err and "client_signed_in" not in out, "quiet by default"
    code, out, err = await gim_client("listen", "-v", "--phone", bob, "--count", "1", *flags(cluster, state))
    assert code == 0 and out.count("\n") == 1 and ": two" in out, out + err
    assert "signed in" not in out, "logs never mix into the output"
    assert re.search(r"INFO gim\.client: signed in on 127\.0\.0\.1:\d+ \(user \d+", err), err


async def test_bad_sign_in_is_reported(cluster: Cluster, state: Path) -> None:
    code, out, err = await gim_client("listen", "--phone", phone(), "--code", "1234", *flags(cluster, state))
    assert code == 1 and out == "" and err.startswith("gim client: error 10010"), out + err
    assert err.count("\n") == 1, "one line, no traceback"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone", "abc"], "gim client: --phone: expected 5 to 15 digits, optionally after a +, got 'abc'"),
        (["--phone", "12"], "gim client: --phone: expected 5 to 15 digits"),
        (["--phone", "+4915112345678", "--tcp", "localhost"], "gim client: --tcp: expected HOST:PORT"),
        (["--phone", "18800000001", "--logic", "127.0.0.1:99999"], "gim client: --logic: expected HOST:PORT"),
        ([], "gim client: --phone is required"),
    ],
)
async def test_bad_arguments_are_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    code, out, err = await gim_client("listen", *args, "--state", str(tmp_path / "s.json"))
    assert code == 1 and out == "" and err.startswith(message) and err.count("\n") == 1, err


async def test_wrong_tcp_address_fails_with_a_clear_message(cluster: Cluster, state: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    args = [*flags(cluster, state), "--tcp", nowhere]  # the later --tcp wins
    code, out, err = await gim_client("listen", "--phone", phone(), *args, timeout=WAIT)
    assert code == 1 and out == "", out + err
    assert err.startswith(f"gim client: cannot reach connect at {nowhere} within 5 s (") and "refused" in err, err
    assert err.count("\n") == 1, err


# -- one device per installation, signing in again ---------------------------------------


async def test_state_file_keeps_one_device_per_installation(cluster: Cluster, state: Path) -> None:
    number = phone()
    for _ in range(3):
        code, out, err = await gim_client("send", "--phone", number, "--to", "1", "hi", *flags(cluster, state))
        assert code == 0, out + err
    async with terminal(cluster, state, number) as first:
        # a second terminal of the same user, while the first holds the device: its own device
        async with terminal(cluster, state, number) as second:
            assert second.device_id != first.device_id
            await second.quit()
        await first.quit()
    async with terminal(cluster, state, number) as again:
        await again.quit()
    account = json.loads(state.read_text())["accounts"][f"127.0.0.1:{cluster.logic.ext_port} {number}"]
    assert [d["device_id"] for d in account] == [first.device_id, second.device_id]
    assert again.device_id == first.device_id, "the same device every run"
    assert all(d["pid"] is None and d["token"] for d in account), "released, token kept"
    assert state.stat().st_mode & 0o077 == 0, "tokens are readable by their owner only"


async def test_a_replaced_token_signs_in_again(cluster: Cluster, state: Path, sdk_client: SdkClients) -> None:
    """The state file's token dies (the server forgot it, or the device signed in
    elsewhere): the CLI signs in again with its phone and code, on the same device, on
    a gRPC call (send) and at the long connection's sign-in (chat)."""
    (bob,) = await cluster.new_user()
    listener = await sdk_client(bob)
    number = phone()
    account = f"127.0.0.1:{cluster.logic.ext_port} {number}"

    def stored() -> dict[str, object]:
        (entry,) = json.loads(state.read_text())["accounts"][account]
        return entry  # type: ignore[no-any-return]

    code, out, err = await gim_client("listen", "--phone", number, "--timeout", "0.1", *flags(cluster, state))
    assert code == 0, out + err
    first = stored()
    await cluster.api.sign_in(number, "0000", first["device_id"])  # the stored token is dead now
    code, out, err = await gim_client(
        "send", "--phone", number, "--to", str(bob.user_id), "by send", *flags(cluster, state)
    )
    assert code == 0, out + err
    second = stored()
    assert second["device_id"] == first["device_id"] and second["token"] != first["token"]

    await cluster.api.sign_in(number, "0000", first["device_id"])  # dead again
    async with terminal(cluster, state, number) as term:
        assert term.device_id == first["device_id"]
        await term.type(f"/to {bob.user_id} by chat")
        await term.expect(r": by chat$")
        await term.quit()
    assert stored()["token"] not in (first["token"], second["token"])
    assert [(await listener.next_event(WAIT)).text for _ in range(2)] == ["by send", "by chat"]


# -- the interactive chat ----------------------------------------------------------------


async def test_chat_with_nicknames(cluster: Cluster, state: Path, sdk_client: SdkClients) -> None:
    (bob,) = await cluster.new_user(nickname="Bob")
    listener = await sdk_client(bob)
    number = phone()
    async with terminal(cluster, state, number) as term:
        me, first_name = term.user_id, number[-4:]  # a new user's nickname: the phone's last digits
        await listener.send_text(me, "hello there")  # arrives while the chat is open
        await term.expect(rf"^\[\d\d:\d\d:\d\d\] Bob \({bob.user_id}\): hello there$")
        await term.type(f"/to {bob.user_id} hi bob", "and again")
        await term.expect(rf"\] {first_name} \({me}\) to Bob \({bob.user_id}\): hi bob$")
        await term.expect(rf"\] {first_name} \({me}\) to Bob \({bob.user_id}\): and again$")
        await term.type("/nick Alice")
        await term.expect(r"^> you are Alice now$")
        await term.type("now with a name")
        await term.expect(rf"\] Alice \({me}\) to Bob \({bob.user_id}\): now with a name$")
        await term.quit()
    got = [await listener.next_event(WAIT) for _ in range(4)]
    assert [e.text for e in got] == ["hello there", "hi bob", "and again", "now with a name"]
    assert got[-1].sender.name == "Alice", "others see the new nickname too"


async def test_friend_request_round_trip(cluster: Cluster, state: Path, tmp_path: Path) -> None:
    async with terminal(cluster, state) as alice, terminal(cluster, tmp_path / "other.json") as bob:
        await alice.type("/nick Alice")
        await bob.type("/nick Bob")
        await alice.expect("> you are Alice now")
        await bob.expect("> you are Bob now")
        await alice.type("/friends")
        await alice.expect("> no friends yet")
        await alice.type(f"/add-friend {bob.user_id} it is me, from the club")
        await alice.expect(rf"^> asked user {bob.user_id} to be your friend$")
        await bob.expect(
            rf'\] \* Alice \({alice.user_id}\) asks to be your friend: "it is me, from the club" '
            rf"\(/accept {alice.user_id} to agree\)$"
        )
        await bob.type(f"/accept {alice.user_id}")
        await bob.expect(rf"^> you and Alice \({alice.user_id}\) are friends now$")
        await alice.expect(rf"\] \* Bob \({bob.user_id}\) accepted your friend request$")
        await alice.type("/friends")
        await alice.expect(rf"^  {bob.user_id}  Bob$")
        await alice.expect(r"^> 1 friends$")
        await alice.quit()
        await bob.quit()


async def test_group_create_add_and_send(cluster: Cluster, state: Path, sdk_client: SdkClients) -> None:
    (bob_creds,) = await cluster.new_user(nickname="Bob")
    (carol_creds,) = await cluster.new_user(nickname="Carol")
    bob = await sdk_client(bob_creds)
    async with terminal(cluster, state) as term:
        me = term.user_id
        await term.type("/nick Alice", f'/create-group "Book club" {bob_creds.user_id}')
        found = await term.expect(r'^> created group (\d+) "Book club" with 2 members')
        group_id = int(found[1])
        await term.expect(rf"\] \* You added Bob \({bob_creds.user_id}\) to group {group_id}$")
        await term.type("hello club")  # plain lines go to the new group
        await term.expect(rf"\] Alice \({me}\) in group {group_id}: hello club$")
        await term.type(f"/add-members {group_id} {carol_creds.user_id} {bob_creds.user_id}")
        await term.expect(rf"^> group {group_id}: added user {carol_creds.user_id}; already members: Bob")
        await term.expect(rf"\] \* You added Carol \({carol_creds.user_id}\) to group {group_id}$")
        await term.type(f"/members {group_id}", "/groups")
        await term.expect(rf"^  {me}  Alice  admin$")
        await term.expect(rf"^> 3 members in group {group_id}$")
        await term.expect(rf"^  {group_id}  Book club  \(3 members\)$")
        await term.type(f"/group {group_id} all three")
        await term.expect(r"in group \d+: all three$")
        await term.quit()
    seen = []
    while "all three" not in seen:
        event = await bob.next_event(WAIT)
        seen.append(event.text or type(event.push).__name__)
    assert seen == ["AddGroupMembersPush", "hello club", "AddGroupMembersPush", "all three"]


async def test_room_join_and_post(cluster: Cluster, state: Path, sdk_client: SdkClients) -> None:
    (bob_creds,) = await cluster.new_user(nickname="Bob")
    bob = await sdk_client(bob_creds)
    room = int(uuid.uuid4().int % (1 << 40)) + 1
    await bob.subscribe_room(room)
    async with terminal(cluster, state) as term:
        await term.type(f"/room {room} anyone here?")  # posting needs no joining
        await term.expect(rf"^> posted to room {room} \(/join {room} to see the room\)$")
        assert (await bob.next_event(WAIT)).text == "anyone here?"
        await term.type(f"/join {room}")
        await term.expect(rf"^> in room {room}$")
        await cluster.api.push_room(bob_creds, room, cx.Text(text="yes, me").SerializeToString())
        await term.expect(rf"\] Bob \({bob_creds.user_id}\) in room {room}: yes, me$")
        await term.type("good")  # plain lines go to the room; joined, the room shows them
        await term.expect(rf"\] \S+ \({term.user_id}\) in room {room}: good$")
        await term.type("/join 0")
        await term.expect(r"^> left the room$")
        await term.quit()
    assert [(await bob.next_event(WAIT)).text for _ in range(2)] == ["yes, me", "good"]  # the room, in order


async def test_bad_input_is_answered_in_one_line_and_the_chat_goes_on(cluster: Cluster, state: Path) -> None:
    bad = {
        "/room abc hello": "! room id must be a number, got 'abc'",
        "/room 5": "! usage: /room ROOM text",
        "/join abc": "! room id must be a number, got 'abc'",
        "/join": "! usage: /join ROOM",
        "/to x hi": "! user id must be a number, got 'x'",
        "/to 2": "! usage: /to USER text",
        "/to 0 hi": "! user id must be a number from 1 to",
        "/group 99999999999999999999 hi": "! group id must be a number from 1 to",
        "/accept": "! usage: /accept USER",
        "/add-friend me": "! user id must be a number, got 'me'",
        "/create-group": "! usage: /create-group NAME [USER...]",
        '/create-group "open': "! cannot read that: No closing quotation",
        "/create-group Club bob": "! user id must be a number, got 'bob'",
        "/add-members 5": "! usage: /add-members GROUP USER...",
        "/members": "! usage: /members GROUP",
        "/nick": "! usage: /nick NAME",
        "/friends now": "! /friends takes no arguments",
        "/bogus": "! unknown command /bogus; /help lists them",
        "plain text": "! no conversation yet",
        "/members 987654321": "! error 10013",  # refused by the server: its code, one line
        "/to 987654321 hi": "! error 10016",
    }
    async with terminal(cluster, state) as term:
        for line, answer in bad.items():
            await term.type(line)
            found = await term.expect(r"^! ")
            assert found.string.startswith(answer), (line, found.string)
        await term.type("/help")
        await term.expect(r"/room ROOM text +post to a room")
        out = await term.quit()
    assert "Traceback" not in out and "Error" not in out, out
