"""The chat page in a real browser: Debian's chromium driven by Playwright (never a
downloaded browser). Two users sign in on two pages, chat both ways, in a group, make
friends, meet in a room, and chat again after the connect node behind the page's
WebSocket restarts. A screenshot is saved under var/test-artifacts/ (its path is printed).
In CI a missing browser fails the test."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gim.internal.connect.server import ConnectServer
from gim.internal.web.server import WebServer
from gim.pkg.config import ConnectConfig, LogicConfig
from gim.pkg.redis_client import free_port
from gimtest.backends import IN_CI
from gimtest.cluster import Cluster

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"
WAIT_MS = 20_000  # for a condition in the page (polled by Playwright), not a sleep


class ConnectNode:
    """A connect node on fixed ports in this process, restartable (a new server, same ports)."""

    def __init__(self, cluster: Cluster) -> None:
        self.config = ConnectConfig(
            redis_url=cluster.storage.redis_url,
            redis_prefix=cluster.storage.redis_prefix,
            grpc_status=cluster.storage.status_mode,
            tcp_listen=f"127.0.0.1:{free_port()}",
            ws_listen=f"127.0.0.1:{free_port()}",
            int_listen=f"127.0.0.1:{free_port()}",
            logic_int_addr=f"127.0.0.1:{cluster.logic.int_port}",
        )
        self.server: ConnectServer | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.ws_listen}/ws"

    async def start(self) -> None:
        self.server = ConnectServer.from_config(self.config)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(1.0)
            self.server = None


@pytest.fixture
async def site(cluster: Cluster) -> AsyncIterator[tuple[str, ConnectNode]]:
    """The page's server (logic's HTTP listener on the cluster's servicers) and its connect node."""
    if cluster.storage.name != "embedded":  # the page sees HTTP and WebSocket, whatever the storage: once is enough
        pytest.skip("the browser test runs once, on the embedded storage (SQLite, as `make run`)")
    node = ConnectNode(cluster)
    await node.start()
    cfg = LogicConfig(
        http_listen="127.0.0.1:0",
        business_ext_addr=f"127.0.0.1:{cluster.business.ext_port}",
        web_ws_url=node.ws_url,
    )
    web = WebServer.for_logic(cfg, cluster.logic.web.logic_ext, cluster.logic.web.logic_int)
    await web.start()
    try:
        yield f"http://127.0.0.1:{web.port}/", node
    finally:
        await web.stop()
        await node.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(page: Any, url: str, phone: str) -> int:
    from playwright.async_api import expect

    await page.goto(url)
    await page.fill("#phone", phone)
    await page.click("#sign-in")
    await expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    me = await page.inner_text("#me")
    match = re.search(r"\((\d+)\)", me)
    assert match, me
    return int(match.group(1))


async def send(page: Any, text: str) -> None:
    from playwright.async_api import expect

    await page.fill("#text", text)
    await page.press("#text", "Enter")
    mine = page.locator("#messages .msg.mine", has_text=text)
    await expect(mine).to_have_count(1, timeout=WAIT_MS)
    await expect(mine.locator(".meta")).not_to_contain_text("send", timeout=WAIT_MS)  # "sending" / "not sent"


async def sees(page: Any, key: str, text: str) -> None:
    """The conversation `key` shows up in the list, and opened it shows `text` from the other side."""
    from playwright.async_api import expect

    await page.click(f'#conversations li[data-key="{key}"]', timeout=WAIT_MS)
    await expect(page.locator("#messages .msg:not(.mine) .body", has_text=text)).to_have_count(1, timeout=WAIT_MS)


async def test_two_users_chat_in_the_browser(site: tuple[str, ConnectNode], browser: Any) -> None:
    from playwright.async_api import expect

    url, node = site
    context = await browser.new_context(viewport={"width": 1000, "height": 640})
    try:
        alice, bob = await context.new_page(), await context.new_page()
        errors: list[str] = []
        for page in (alice, bob):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        alice_id = await sign_in(alice, url, "1" + str(uuid.uuid4().int)[:10])
        bob_id = await sign_in(bob, url, "1" + str(uuid.uuid4().int)[:10])

        # a message each way
        await alice.fill("#to", str(bob_id))
        await alice.press("#to", "Enter")
        await send(alice, "hello bob")
        await sees(bob, f"u:{alice_id}", "hello bob")
        await send(bob, "hello alice")
        await expect(alice.locator("#messages .msg:not(.mine) .body", has_text="hello alice")).to_have_count(1)

        # a group: alice creates it with bob and writes in it
        await alice.fill("#group-name", "web group")
        await alice.fill("#group-members", str(bob_id))
        await alice.click("#create-group button")
        await expect(alice.locator("#room-title")).to_have_text("web group", timeout=WAIT_MS)
        group_key = await alice.locator("#conversations li.active").get_attribute("data-key")
        assert group_key and group_key.startswith("g:"), group_key
        await send(alice, "hi group")
        await sees(bob, group_key, "hi group")
        await expect(bob.locator(f'#groups li[data-group="{group_key[2:]}"]')).to_have_count(1, timeout=WAIT_MS)

        # a friend request, pushed to alice as it is made, accepted there, shown on both sides
        await bob.fill("#friend-id", str(alice_id))
        await bob.press("#friend-id", "Enter")
        await alice.click(f'#friend-requests li[data-request="{bob_id}"] button', timeout=WAIT_MS)
        await expect(alice.locator(f'#friends li[data-friend="{bob_id}"]')).to_have_count(1, timeout=WAIT_MS)
        await expect(bob.locator(f'#friends li[data-friend="{alice_id}"]')).to_have_count(1, timeout=WAIT_MS)

        # a room: both join, alice's message reaches both (the room's broadcast)
        room = str(int(uuid.uuid4().int % 10**9) + 1)
        for page in (alice, bob):
            await page.fill("#room-id", room)
            await page.press("#room-id", "Enter")
            await expect(page.locator("#room-title")).to_have_text(f"room {room}")
        await alice.fill("#text", "hi room")
        await alice.press("#text", "Enter")
        for page in (alice, bob):
            await expect(page.locator("#messages .msg .body", has_text="hi room")).to_have_count(1, timeout=WAIT_MS)

        # the connect node restarts: both pages reconnect by themselves, sync, and chat on
        await node.stop()
        for page in (alice, bob):
            await expect(page.locator("#status")).not_to_have_attribute("data-state", "online", timeout=WAIT_MS)
        await node.start()
        for page in (alice, bob):
            await expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
        await alice.click(f'#conversations li[data-key="u:{bob_id}"]')
        await send(alice, "back after the restart")
        await sees(bob, f"u:{alice_id}", "back after the restart")
        await send(bob, "me too")
        await expect(alice.locator("#messages .msg:not(.mine) .body", has_text="me too")).to_have_count(1)
        # nothing shown twice across the reconnect and its sync
        await expect(bob.locator("#messages .msg .body", has_text="hello bob")).to_have_count(1)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "browser-chat.png"
        await bob.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot}")
        assert shot.stat().st_size > 0
        assert errors == [], errors
    finally:
        await context.close()
