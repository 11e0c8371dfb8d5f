"""`gim client` as a person or a script uses it: real subprocesses against the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from gim.pkg.pb import connect_ext_pb2 as cx

GIM = str(Path(sys.executable).with_name("gim"))


def phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


def flags(cluster) -> list[str]:  # type: ignore[no-untyped-def]
    host, port = cluster.tcp
    return [
        "--tcp", f"{host}:{port}", "--ws-url", cluster.ws_url,
        "--logic", f"127.0.0.1:{cluster.logic.ext_port}", "--business", f"127.0.0.1:{cluster.business.ext_port}",
    ]  # fmt: skip


async def gim_client(*args: str, stdin: bytes | None = None, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        GIM, "client", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()


async def user_id_of(cluster, number: str) -> int:  # type: ignore[no-untyped-def]
    device_id = await cluster.api.register_device()
    return (await cluster.api.sign_in(number, "0000", device_id)).user_id  # type: ignore[no-any-return]


async def test_send_then_listen(cluster) -> None:  # type: ignore[no-untyped-def]
    alice, bob = phone(), phone()
    bob_id = await user_id_of(cluster, bob)
    code, out = await gim_client("send", "--phone", alice, "--to", str(bob_id), "hello", "from", "cli", *flags(cluster))
    assert code == 0 and "sent (seq 1)" in out, out
    code, out = await gim_client("listen", "--phone", bob, "--count", "1", "--timeout", "30", *flags(cluster))
    assert code == 0, out
    assert "hello from cli" in out and out.count("\n") == 1, out
    # nothing more arrives: a timeout with fewer than --count messages exits 1
    code, out = await gim_client("listen", "--phone", bob, "--ws", "--count", "1", "--timeout", "0.5", *flags(cluster))
    assert code == 1 and out == "", out


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    async with asyncio.timeout(30):
        while needle not in "".join(seen):
            line = await stream.readline()
            assert line, "gim client ended early:\n" + "".join(seen)
            seen.append(line.decode())


@contextlib.asynccontextmanager
async def interactive(cluster, number: str) -> AsyncIterator[asyncio.subprocess.Process]:  # type: ignore[no-untyped-def]
    """`gim client` typed at by a person: write to its stdin, read its stdout; killed if left running."""
    proc = await asyncio.create_subprocess_exec(
        GIM, "client", "--phone", number, *flags(cluster),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def finish(proc: asyncio.subprocess.Process, seen: list[str]) -> str:
    """Type /quit; everything the session printed."""
    assert proc.stdin is not None
    proc.stdin.write(b"/quit\n")
    await proc.stdin.drain()
    async with asyncio.timeout(30):
        rest, _ = await proc.communicate()
    assert proc.returncode == 0, "".join(seen) + rest.decode()
    return "".join(seen) + rest.decode()


async def test_interactive_chat(cluster, sdk_client) -> None:  # type: ignore[no-untyped-def]
    (bob,) = await cluster.new_user()
    await cluster.api.update_user(bob, nickname="Bob")
    listener = await sdk_client(bob)
    seen: list[str] = []
    async with interactive(cluster, phone()) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        await read_until(proc.stdout, "/help lists the commands", seen)
        alice_id = int(seen[-1].split("(user ")[1].split(",")[0])
        await listener.send_text(alice_id, "hello alice")  # arrives while the chat is open
        await read_until(proc.stdout, ": hello alice", seen)
        assert "Bob (" in seen[-1], seen
        proc.stdin.write(f"/help\n/to {bob.user_id} hi bob\nand again\n/to x\n/bogus\n".encode())
        out = await finish(proc, seen)
    assert "/group GROUP text" in out
    assert f"> sent to user {bob.user_id} (seq 2)" in out and f"> sent to user {bob.user_id} (seq 3)" in out
    assert "! usage: /to USER_ID text" in out and "! unknown command /bogus" in out
    assert "hi bob" not in out.replace("/to", ""), "what this terminal sent is not printed back"
    got = [await listener.next_event(20) for _ in range(3)]
    assert [e.text for e in got] == ["hello alice", "hi bob", "and again"]


async def test_bad_sign_in_is_reported(cluster) -> None:  # type: ignore[no-untyped-def]
    code, out = await gim_client("listen", "--phone", phone(), "--code", "1234", *flags(cluster))
    assert code == 1 and "error 10010" in out, out


async def test_interactive_friends_groups_and_rooms(cluster, sdk_client) -> None:  # type: ignore[no-untyped-def]
    api = cluster.api
    number = phone()
    alice = await api.sign_in(number, "0000", await api.register_device())
    (bob_creds,) = await cluster.new_user(nickname="Bob")
    bob = await sdk_client(bob_creds)
    await api.add_friend(bob_creds, alice.user_id)
    await api.agree_add_friend(alice, bob_creds.user_id)
    group_id = await api.create_group(bob_creds, "Club", [alice.user_id])
    room = int(uuid.uuid4().int % (1 << 40)) + 1
    seen: list[str] = []
    async with interactive(cluster, number) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        await read_until(proc.stdout, "/help lists the commands", seen)
        proc.stdin.write(f"/friends\n/groups\n/group {group_id} hello club\n/room {room}\n".encode())
        await proc.stdin.drain()
        await read_until(proc.stdout, f"> in room {room}", seen)
        await api.push_room(bob_creds, room, cx.Text(text="room news").SerializeToString())
        await read_until(proc.stdout, "room news", seen)
        out = await finish(proc, seen)
    assert f"  {bob_creds.user_id}  Bob" in out and "> 1 friends" in out, out
    assert f"  {group_id}  Club  (2 members)" in out and "> 1 groups" in out, out
    assert f"> sent to group {group_id}" in out, out
    texts = []
    while "hello club" not in texts:  # after the friend and group pushes
        texts.append((await bob.next_event(20)).text)
