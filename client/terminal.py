"""Where `gim client` reads typed lines from.

On a terminal: prompt_toolkit's asyncio prompt, with line editing, a history kept
across runs (arrow keys, Ctrl-R) and command completion; while it is open, whatever the
chat prints appears above the prompt (`patch_stdout`). Otherwise (a pipe, a file, a
test): plain lines from stdin, read by a daemon thread so that leaving never waits for
a blocked read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

_log = logging.getLogger("gim.client.terminal")


class LineSource:
    """Typed lines; `read()` returns None at the end (Ctrl-D, Ctrl-C, end of input)."""

    async def read(self) -> str | None:
        raise NotImplementedError

    @contextlib.contextmanager
    def output(self) -> Iterator[None]:
        """While inside, printing does not disturb the line being typed."""
        yield


class PipeLines(LineSource):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\n"))
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

        threading.Thread(target=read, name="stdin", daemon=True).start()

    async def read(self) -> str | None:
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # every later read ends too
        return line


class PromptLines(LineSource):
    def __init__(self, commands: Iterable[str], history: Path | None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        kept: FileHistory | InMemoryHistory = InMemoryHistory()
        if history is not None:
            try:
                history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                history.touch(mode=0o600, exist_ok=True)
                kept = FileHistory(str(history))
            except OSError as exc:
                _log.warning("history not kept: cannot write %s (%s)", history, exc)
        completer = WordCompleter(sorted(commands), sentence=True)
        self._session: PromptSession[str] = PromptSession(
            history=kept, completer=completer, complete_while_typing=False
        )

    async def read(self) -> str | None:
        try:
            return await self._session.prompt_async("> ")
        except (EOFError, KeyboardInterrupt):
            return None

    @contextlib.contextmanager
    def output(self) -> Iterator[None]:
        from prompt_toolkit.patch_stdout import patch_stdout

        with patch_stdout(raw=True):
            yield


def line_source(commands: Iterable[str], history: Path | None) -> LineSource:
    """The prompt on a terminal, plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return PromptLines(commands, history)
    return PipeLines()
