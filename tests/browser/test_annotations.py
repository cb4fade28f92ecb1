"""Two guests in one room share the annotation layer: a line drawn on one page appears in
the other's list while it is drawn, and the author's undo removes it on both pages.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.test_join_chat import _post, _redeem

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/annot.png"


async def _room_with_code(server: Any) -> tuple[str, str]:
    """A room without a lobby and a participant share code for it."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=server.url, cookie_jar=jar) as http:
        await _post(
            http,
            "/api/accounts",
            {
                "name": "Dr Ann Host",
                "email": f"annot-{uuid.uuid4().hex[:12]}@example.org",
                "password": "correct horse battery",
                "specialty": "radiology",
                "country": "FR",
                "languages": ["en"],
            },
        )
        room = await _post(
            http, "/api/rooms", {"title": "Annotation test", "summary": "", "lobby": False}
        )
        code = await _post(
            http,
            f"/api/rooms/{room['id']}/codes",
            {"role": "participant", "expires_in_s": 3600, "max_uses": 5},
        )
    return room["id"], code["code"]


async def _guest(browser: Browser, server: Any, room_id: str, code: str, name: str) -> Page:
    context = await browser.new_context(locale="en-US", viewport={"width": 1200, "height": 1100})
    page = await context.new_page()
    await page.goto(f"{server.url}/r/{room_id}")
    await _redeem(page, code, name)
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "connected"
    )
    await expect(page.get_by_test_id("annotation-canvas")).to_be_visible()
    await expect(page.get_by_test_id("tool-line")).to_be_enabled()
    return page


async def test_line_is_shared_and_undone(server: Any, browser: Browser) -> None:
    room_id, code = await _room_with_code(server)
    errors: list[str] = []
    a = await _guest(browser, server, room_id, code, "Dr A")
    b = await _guest(browser, server, room_id, code, "Dr B")
    for page in (a, b):
        page.on("pageerror", lambda e: errors.append(str(e)))

    await a.get_by_test_id("tool-line").click()
    await expect(a.get_by_test_id("undo")).to_be_disabled()
    canvas = a.get_by_test_id("annotation-canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3
    x1, y1 = box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.3
    await a.mouse.move(x0, y0)
    await a.mouse.down()
    await a.mouse.move(x1, y1, steps=10)
    await a.mouse.up()

    items_a = a.get_by_test_id("annotation-list").get_by_test_id("annotation-item")
    items_b = b.get_by_test_id("annotation-list").get_by_test_id("annotation-item")
    await expect(items_a).to_have_count(1)
    await expect(items_b).to_have_count(1, timeout=5000)
    await expect(items_b.first).to_have_attribute("data-kind", "line")
    # Half the canvas width in image pixels (512 px wide image), at 0.5 mm per pixel.
    await expect(items_b.first).to_contain_text("256.0 px")
    await expect(items_b.first).to_contain_text("128.0 mm")
    await a.screenshot(path=SCREENSHOT, full_page=True)

    # B cannot undo A's stroke; A's undo removes it everywhere, and redo brings it back.
    await expect(b.get_by_test_id("undo")).to_be_disabled()
    await a.get_by_test_id("undo").click()
    await expect(items_a).to_have_count(0)
    await expect(items_b).to_have_count(0, timeout=5000)
    await a.get_by_test_id("redo").click()
    await expect(items_b).to_have_count(1, timeout=5000)

    assert not errors, errors
    for page in (a, b):
        await page.context.close()
