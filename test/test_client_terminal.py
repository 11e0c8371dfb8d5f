"""`gim client` on a real terminal (a pseudo-terminal): line editing with the arrow
keys, history, messages printed while a line is being typed, Ctrl-D to leave."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gimtest.callables import SdkClients
    from gimtest.cluster import Cluster


GIM = str(Path(sys.executable).with_name("gim"))
WAIT = 30.0
LEFT, UP, ENTER, CTRL_D = "\x1b[D", "\x1b[A", "\r", "\x04"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")


class Pty:
    """The controlling side of a pseudo-terminal whose other side is a `gim client`."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.raw = ""
        self._more = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed its side
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        for _ in range(data.count(b"\x1b[6n")):  # answer "where is the cursor?" as a terminal does
            os.write(self.master, b"\x1b[1;1R")
        self.raw += data.decode(errors="replace")
        self._more.set()

    @property
    def text(self) -> str:
        """What was printed, without the terminal's control sequences."""
        return ANSI.sub("", self.raw)

    async def expect(self, needle: str, after: int = 0) -> int:
        """Wait until `needle` shows after position `after` of `text`; where it ends."""
        try:
            async with asyncio.timeout(WAIT):
                while (at := self.text.find(needle, after)) < 0:
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            raise AssertionError(f"{needle!r} not shown within {WAIT} s; the terminal got {self.raw!r}") from None
        return at + len(needle)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_line_editing_history_and_incoming_messages_on_a_terminal(
    cluster: Cluster, sdk_client: SdkClients, tmp_path: Path
) -> None:
    (bob_creds,) = await cluster.new_user(nickname="Bob")
    bob = await sdk_client(bob_creds)
    state = tmp_path / "client.json"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        GIM, "client", "--phone", "1" + str(uuid.uuid4().int)[:10], "--state", str(state),
        "--tcp", f"127.0.0.1:{cluster.tcp[1]}", "--logic", f"127.0.0.1:{cluster.logic.ext_port}",
        "--business", f"127.0.0.1:{cluster.business.ext_port}",
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    term = Pty(master)
    try:
        at = await term.expect("/help lists the commands")
        me = int(re.search(r"\(user (\d+),", term.text)[1])  # type: ignore[index]
        at = await term.expect(">", at)  # the prompt
        # a typo mended with the arrow keys: "hllo", three to the left, "e"
        term.type(f"/to {bob_creds.user_id} hllo{LEFT * 3}e{ENTER}")
        assert (await bob.next_event(WAIT)).text == "hello"
        at = await term.expect(">", await term.expect(": hello", at))  # the echo, then a prompt
        term.type(f"{UP}{ENTER}")  # the previous line again, from the history
        assert (await bob.next_event(WAIT)).text == "hello"
        at = await term.expect(">", await term.expect(": hello", at))
        term.type("half a li")  # a message arrives while a line is half typed
        await bob.send_text(me, "ping")
        assert (await bob.next_event(WAIT)).text == "ping"  # bob's own stream has it too
        at = await term.expect(f"Bob ({bob_creds.user_id}): ping", at)
        term.type(f"ne{ENTER}")
        assert (await bob.next_event(WAIT)).text == "half a line", "the typed line survived the message"
        # keys typed between two prompts meet the terminal's own line discipline (a person
        # types at a prompt): wait for the next one
        await term.expect(">", await term.expect(": half a line", at))
        term.type(CTRL_D)
        try:
            async with asyncio.timeout(WAIT):
                assert await proc.wait() == 0, term.text
        except TimeoutError:
            raise AssertionError(f"Ctrl-D did not end it within {WAIT} s; the terminal got {term.raw!r}") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        term.close()
    assert "Traceback" not in term.text and "WARNING" not in term.text, term.text
    assert f"/to {bob_creds.user_id} hello" in (tmp_path / "history").read_text(), "history kept for the next run"
