"""The browser rides out a server restart: `server_shutdown`, reconnect with the same
participant token, and a chat message written while the server was down is sent once,
with its original client id, after the reconnect.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.utils import ServerProcess

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restartable(tmp_path: Path, web_client_dist: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


async def _setup_room(url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession(
        base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:

        async def post(path: str, body: dict[str, Any]) -> Any:
            async with http.post(path, json=body) as resp:
                data = await resp.json()
                assert resp.status in (200, 201), data
                return data

        await post(
            "/api/accounts",
            {
                "name": "Dr Host",
                "email": f"h-{uuid.uuid4().hex[:10]}@example.org",
                "password": "correct horse battery",
                "specialty": "cardiology",
                "country": "CA",
                "languages": ["en"],
            },
        )
        room = await post("/api/rooms", {"title": "Echo review", "summary": "", "lobby": False})
        code = await post(f"/api/rooms/{room['id']}/codes", {"role": "participant"})
        return room["id"], code["code"]


async def test_chat_survives_server_restart(restartable: ServerProcess, browser: Browser) -> None:
    room_id, code = await _setup_room(restartable.url)
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(f"{restartable.url}/r/{room_id}")
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("name-input").fill("Dr Guest")
    await page.get_by_test_id("redeem-button").click()
    await expect(page.get_by_test_id("participant-list")).to_be_visible()  # lobby off: straight in

    messages = page.get_by_test_id("chat-log").get_by_test_id("chat-message")
    await page.get_by_test_id("chat-input").fill("before the restart")
    await page.get_by_test_id("chat-send").click()
    await expect(messages.first).to_have_attribute("data-status", "sent")

    await asyncio.to_thread(restartable.stop)
    status = page.get_by_test_id("connection-status")
    await expect(status).not_to_have_attribute("data-state", "connected")
    await page.get_by_test_id("chat-input").fill("written while the server was down")
    await page.get_by_test_id("chat-input").press("Enter")
    pending = messages.nth(1)
    await expect(pending).to_have_attribute("data-status", "pending")
    client_id = await pending.get_attribute("data-id")

    await asyncio.to_thread(restartable.start)
    await expect(status).to_have_attribute("data-state", "connected", timeout=40_000)
    await expect(messages).to_have_count(2)
    await expect(messages.nth(1)).to_have_attribute("data-status", "sent", timeout=10_000)
    await expect(messages.nth(1)).to_have_attribute("data-seq", "2")
    assert await messages.nth(1).get_attribute("data-id") == client_id
    await expect(page.get_by_test_id("code-input")).to_have_count(0)
    await context.close()
