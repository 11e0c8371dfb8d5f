"""The README works as written (issue 14): its quick-start commands and its SDK example run
against a fresh `gim run`, and every file the documentation cites exists.

Blocks marked for testing are fenced with an info string that has the word `test`
(```sh test, ```python test); a ```text output block right after the shell block is what
the shell block prints. The blocks run as written, pointed at a `gim run` on free ports
in a temporary folder: `gim client` gets the addresses as options, the Python example
through the variables it reads (LOGIC_ADDR, BUSINESS_ADDR, TCP_ADDR).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gim.pkg.redis_client import free_port
from gimtest.processes import RUN_LISTENERS, gim_run_env

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
GIM = str(Path(sys.executable).with_name("gim"))
START = 90.0  # seconds for gim run to print its banner
STEP = 60.0  # seconds for one README block to run
DEMO_LINE = re.compile(r"phone (\d+)\s+user_id (\d+)\s+device_id (\d+)\s+token (\S+)")
BANNER_END = "/help lists the commands"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.M | re.S)


def fenced_blocks(text: str) -> list[tuple[list[str], str]]:
    """Every fenced block: (the words of its info string, its body)."""
    return [(info.split(), body) for info, body in FENCE.findall(text)]


def marked(kind: str) -> list[str]:
    """The bodies of the README's blocks fenced as ```<kind> test."""
    return [body for words, body in fenced_blocks(README.read_text()) if words == [kind, "test"]]


def shown_output() -> list[str]:
    """The lines of the README's ```text output block (what the shell block prints)."""
    blocks = [body for words, body in fenced_blocks(README.read_text()) if words == ["text", "output"]]
    assert len(blocks) == 1, "the README shows the quick start's output in one ```text output block"
    return blocks[0].splitlines()


# -- a gim run on free ports ----------------------------------------------------------------


class Run:
    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int]) -> None:
        self.proc = proc
        self.ports = ports
        self.output = ""

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    async def until_banner(self) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(START):
            while BANNER_END not in self.output:
                line = await self.proc.stdout.readline()
                assert line, f"gim run ended before its banner:\n{self.output}"
                self.output += line.decode()

    @property
    def demo(self) -> list[tuple[str, ...]]:
        return DEMO_LINE.findall(self.output)

    async def stop(self) -> str:
        """Ctrl-C, and everything it printed after the banner."""
        banner = len(self.output)
        self.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, _ = await self.proc.communicate()
        self.output += rest.decode()
        assert self.proc.returncode == 0, self.output
        return self.output[banner:]


@contextlib.asynccontextmanager
async def gim_run(tmp_path: Path) -> AsyncIterator[Run]:
    names = (*RUN_LISTENERS, "redis")
    ports = {name: free_port() for name in names}
    addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    database, redis_url = f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}", f"redis://{addr['redis']}/0"
    env = gim_run_env(addr, database, redis_url, "info")  # what `make run` shows: the banner must stay visible
    proc = await asyncio.create_subprocess_exec(
        GIM, "run", "--var", str(tmp_path / "var"), env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield Run(proc, ports)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def sh(script: str, env: dict[str, str]) -> str:
    """Run `script` with bash from the repository root (as a reader would); its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(STEP):
        out, err = await proc.communicate()
    assert proc.returncode == 0, f"{script!r} failed ({proc.returncode}):\n{out.decode()}{err.decode()}"
    return out.decode()


def client_env(tmp_path: Path) -> dict[str, str]:
    """gim client keeps its device file under XDG_STATE_HOME: here, not in the home folder."""
    return dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))


# The README's curl session (```console test): "$ " commands and what each prints. The
# device id and the token differ from run to run: each is learned from the answer that
# shows it and put into the commands that follow in place of the README's.
LEARNED = re.compile(r'"(deviceId|token)": "([^"]+)"')
README_HTTP = "127.0.0.1:8088"


def console_steps(block: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


async def run_console(block: str, http_addr: str) -> None:
    learned: dict[str, tuple[str, str]] = {}  # field -> (the README's value, this run's)
    for command, shown in console_steps(block):
        command = command.replace(README_HTTP, http_addr)
        for field, (readme, actual) in learned.items():
            if field == "token":
                command = command.replace(readme, actual)
            else:
                command = command.replace(f'"deviceId": "{readme}"', f'"deviceId": "{actual}"')
                command = command.replace(f"device_id: {readme}'", f"device_id: {actual}'")
        printed = (await sh(command, dict(os.environ))).splitlines()
        assert len(printed) == len(shown), (command, printed, shown)
        for line, expected in zip(printed, shown, strict=True):
            pattern = re.escape(expected)
            for field, value in LEARNED.findall(expected):
                pattern = pattern.replace(re.escape(f'"{field}": "{value}"'), f'"{field}": "(?P<{field}>[^"]+)"')
            match = re.fullmatch(pattern, line)
            assert match, f"printed {line!r}, the README shows {expected!r}"
            for field, value in LEARNED.findall(expected):
                learned[field] = (value, match[field])


def as_pattern(shown: str) -> re.Pattern[str]:
    """A README output line as a pattern: any clock time where it shows one."""
    return re.compile(re.escape(shown).replace(r"\[16:03:20\]", r"\[\d\d:\d\d:\d\d\]"))


# -- the tests --------------------------------------------------------------------------------


async def test_the_readme_quick_start_and_sdk_example_run_as_written(tmp_path: Path) -> None:
    (shell,) = marked("sh")
    (example,) = marked("python")
    async with gim_run(tmp_path) as run:
        await run.until_banner()
        assert "development sign-in code 0000" in run.output, run.output
        assert [phone for phone, *_ in run.demo] == ["18800000001", "18800000002"]

        # the shell quick start, pointed at this gim run; it prints what the README shows
        options = f"--tcp {run.addr('tcp')} --logic {run.addr('l_ext')} --business {run.addr('b_ext')}"
        assert shell.count(".venv/bin/gim client ") == 2
        printed = await sh(
            shell.replace(".venv/bin/gim client ", f".venv/bin/gim client {options} "), client_env(tmp_path)
        )
        lines = printed.splitlines()
        shown = shown_output()
        assert len(lines) == len(shown), f"printed {printed!r}, the README shows {shown}"
        for line, expected in zip(lines, shown, strict=True):
            assert as_pattern(expected).fullmatch(line), f"printed {line!r}, the README shows {expected!r}"

        # the SDK example, with the first demo user's credentials from the banner
        script = tmp_path / "sdk_demo.py"
        script.write_text(example)
        _, user_id, device_id, token = run.demo[0]
        env = dict(os.environ, LOGIC_ADDR=run.addr("l_ext"), BUSINESS_ADDR=run.addr("b_ext"), TCP_ADDR=run.addr("tcp"))
        printed = await sh(f".venv/bin/python {script} {user_id} {device_id} {token}", env)
        lines = printed.splitlines()
        assert re.fullmatch(r"sent as user 1, seq \d+", lines[0]), printed
        assert re.fullmatch(r"user 2 got seq \d+ from 0001: hi from the SDK", lines[-1]), printed

        # the banner's own next step reaches this gim run: its client command, as printed
        (command,) = [line.strip() for line in run.output.splitlines() if line.strip().endswith("--phone 18800000001")]
        assert f"--tcp {run.addr('tcp')}" in command and f"--logic {run.addr('l_ext')}" in command, command
        await sh(f"{command} send --to 2 from the banner", client_env(tmp_path))
        listened = await sh(
            f".venv/bin/gim client {options} listen --phone 18800000002 --count 1 --timeout 30", client_env(tmp_path)
        )
        assert listened.rstrip().endswith("0001 (1): from the banner"), listened

        # the curl session of the HTTP API, against this run's HTTP listener
        (session,) = marked("console")
        await run_console(session, run.addr("http"))
        assert f"http://{run.addr('http')}/" in run.output, "the banner shows the chat page's URL"

        after_banner = await run.stop()
    # Nothing scrolled the banner away while the clients came and went: the next thing
    # gim run printed is its own stop.
    first = after_banner.strip().splitlines()[0]
    assert "stop_requested" in first, after_banner
    assert "conn_opened" not in after_banner and "signed_in" not in after_banner, after_banner


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITED = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|yaml|yml|sql|proto|toml|example))`")


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_cited_file_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            missing.append(target)
    for cited in CITED.findall(text):
        if not (REPO / cited).exists() and not (doc.parent / cited).exists():
            missing.append(cited)
    assert not missing, f"{doc.name} cites what does not exist: {missing}"


MD_NAME = re.compile(r"\b([A-Za-z][\w-]*\.md)\b")


def test_no_file_of_the_repository_cites_a_document_that_is_not_in_it() -> None:
    """The help texts, docstrings and comments name only documents the repository has."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    documents = {Path(p).name for p in tracked if p.endswith(".md")} | {p.name for p in DOCS}
    texts = {p: (REPO / p).read_text(errors="replace") for p in tracked if (REPO / p).is_file() and Path(p).suffix in
             {".py", ".proto", ".md", ".yaml", ".yml", ".toml", ".example", ""}}  # fmt: skip
    for command in (["--help"], ["bench", "--help"], ["client", "--help"]):
        texts[f"gim {' '.join(command)}"] = subprocess.run(
            [GIM, *command], capture_output=True, text=True, timeout=STEP, check=True
        ).stdout
    wrong = sorted(
        {f"{where}: {name}" for where, text in texts.items() for name in MD_NAME.findall(text) if name not in documents}
    )
    assert not wrong, "documents cited but not in the repository:\n" + "\n".join(wrong)
