"""A guest joins a consult from the browser with a share code, waits in the lobby, is
admitted by a host (a python-socketio client), chats both ways, and resumes after closing
the tab. Also: the French UI.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import socketio
from playwright.async_api import Browser, Page, expect

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/consultd-room.png"


@dataclass
class Host:
    """A physician who hosts a room, connected over socket.io."""

    room_id: str
    code: str
    participant_id: str
    sio: socketio.AsyncClient
    events: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)

    async def next(self, event: str, pred: Any = lambda _: True, within: float = 10) -> Any:
        q = self.events[event]

        async def wait() -> Any:
            while True:
                item = await q.get()
                if pred(item):
                    return item

        return await asyncio.wait_for(wait(), within)

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack = await self.sio.call(event, payload, timeout=10)
        assert isinstance(ack, dict)
        assert ack.get("ok") is True, ack
        return ack


async def _post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
    async with http.post(path, json=body) as resp:
        data = await resp.json()
        assert resp.status in (200, 201), (path, resp.status, data)
        return data


@pytest.fixture
async def host(server: Any) -> AsyncIterator[Host]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(base_url=server.url, cookie_jar=jar) as http:
        email = f"host-{uuid.uuid4().hex[:12]}@example.org"
        await _post(
            http,
            "/api/accounts",
            {
                "name": "Dr Ada Host",
                "email": email,
                "password": "correct horse battery",
                "specialty": "radiology",
                "country": "FR",
                "languages": ["en", "fr"],
            },
        )
        room = await _post(
            http,
            "/api/rooms",
            {
                "title": "Thoracic CT second opinion",
                "summary": "62 y.o., nodule RUL",
                "lobby": True,
            },
        )
        code = await _post(
            http,
            f"/api/rooms/{room['id']}/codes",
            {"role": "participant", "expires_in_s": 3600, "max_uses": 5},
        )
        admission = await _post(http, f"/api/rooms/{room['id']}/join", {})

    sio = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    events: dict[str, asyncio.Queue[Any]] = {}
    for name in ("joined", "presence", "chat", "error"):
        q: asyncio.Queue[Any] = asyncio.Queue()
        events[name] = q
        sio.on(name, q.put_nowait)
    await sio.connect(
        server.url,
        auth={"room": room["id"], "token": admission["token"]},
        transports=["websocket"],
        socketio_path="socket.io",
        wait_timeout=10,
    )
    h = Host(room["id"], code["code"], admission["participant_id"], sio, events)
    joined = await h.next("joined")
    assert joined["self"]["role"] == "host"
    try:
        yield h
    finally:
        await sio.disconnect()


async def _redeem(page: Page, code: str, name: str) -> None:
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("redeem-button").click()


async def test_guest_joins_through_lobby_and_chats(
    server: Any, browser: Browser, host: Host
) -> None:
    context = await browser.new_context(locale="en-US", viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    page_errors: list[str] = []
    context.on("weberror", lambda e: page_errors.append(str(e.error)))

    await page.goto(f"{server.url}/r/{host.room_id}")
    await expect(page.get_by_test_id("redeem-button")).to_have_text("Join")
    await _redeem(page, host.code.lower().replace("-", " "), "Dr Guest")  # the server normalises
    await expect(page.get_by_test_id("lobby-waiting")).to_be_visible()

    waiting = await host.next(
        "presence", lambda p: p["state"] == "lobby" and p["name"] == "Dr Guest"
    )
    guest_id = waiting["id"]
    await host.call("admit", {"participant_id": guest_id})

    people = page.get_by_test_id("participant-list")
    await expect(people).to_be_visible()
    await expect(page.get_by_test_id(f"participant-{guest_id}")).to_contain_text("Dr Guest")
    await expect(page.get_by_test_id(f"participant-{guest_id}")).to_have_attribute(
        "data-state", "joined"
    )
    await expect(page.get_by_test_id(f"participant-{host.participant_id}")).to_contain_text(
        "Dr Ada Host"
    )
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "connected"
    )
    await expect(page.get_by_test_id("lobby-waiting")).to_have_count(0)

    # host -> browser
    await host.call("chat", {"id": "host-1", "text": "Welcome, please look at slice 112."})
    log = page.get_by_test_id("chat-log")
    await expect(log.get_by_test_id("chat-message")).to_have_count(1)
    await expect(log.get_by_test_id("chat-message").first).to_contain_text(
        "Welcome, please look at slice 112."
    )

    # browser -> host: shown at once, then confirmed by the ack
    await page.get_by_test_id("chat-input").fill("Looks like a hamartoma to me.")
    await page.get_by_test_id("chat-send").click()
    got = await host.next("chat", lambda m: m["author_id"] == guest_id)
    assert got["text"] == "Looks like a hamartoma to me."
    assert got["seq"] == 2
    mine = log.locator(f'[data-id="{got["id"]}"]')
    await expect(mine).to_have_attribute("data-status", "sent")
    await expect(mine).to_have_attribute("data-seq", "2")
    await expect(page.get_by_test_id("chat-input")).to_have_value("")

    await page.screenshot(path=SCREENSHOT, full_page=True)

    # Close the tab and reopen within the grace period: the participant cookie resumes.
    await page.close()
    await host.next("presence", lambda p: p["id"] == guest_id and p["state"] == "reconnecting")
    page = await context.new_page()
    await page.goto(f"{server.url}/r/{host.room_id}")
    await expect(page.get_by_test_id(f"participant-{guest_id}")).to_have_attribute(
        "data-state", "joined"
    )
    await expect(page.get_by_test_id("code-input")).to_have_count(0)
    await host.next("presence", lambda p: p["id"] == guest_id and p["state"] == "joined")
    log = page.get_by_test_id("chat-log")
    await expect(log.get_by_test_id("chat-message")).to_have_count(2)
    await expect(log.get_by_test_id("chat-message").nth(1)).to_contain_text("hamartoma")

    assert host.events["error"].empty()
    assert not page_errors, page_errors
    await context.close()


async def test_french_ui(server: Any, browser: Browser, host: Host) -> None:
    context = await browser.new_context(locale="fr-FR")
    page = await context.new_page()
    await page.goto(f"{server.url}/r/{host.room_id}")
    button = page.get_by_test_id("redeem-button")
    await expect(button).to_have_text("Rejoindre")
    assert await page.evaluate("document.documentElement.lang") == "fr"

    # Switching language re-translates in place and is remembered.
    await page.get_by_test_id("name-input").fill("Dr Invitée")
    await page.get_by_test_id("lang-select").select_option("en")
    await expect(button).to_have_text("Join")
    await expect(page.get_by_test_id("name-input")).to_have_value("Dr Invitée")
    await page.reload()
    await expect(page.get_by_test_id("redeem-button")).to_have_text("Join")

    # Error messages come from the error code, in the chosen language.
    await page.get_by_test_id("lang-select").select_option("fr")
    await _redeem(page, "00000-00000-00000-00000-00000", "Dr Invitée")
    await expect(page.get_by_test_id("join-status")).to_have_attribute("data-kind", "error")
    text = await page.get_by_test_id("join-status").inner_text()
    assert text and "Something" not in text
    await context.close()
