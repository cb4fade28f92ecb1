"""Two guests in one room share the annotation layer on the demo CT phantom: every kind of
annotation drawn on one page appears in the other's shared map and list (with its
measurement: lengths in mm, angles, ROI statistics in HU from the phantom's stored values),
pointers are shared through awareness, a guest cannot delete another's annotation, and the
author's undo reverts a shape or an edit on both pages.

The pages expose their shared state through test hooks (``window.__consultdAnnotations``,
installed because the init script sets ``window.__consultdTestHooks``). Every wait is for a
condition; "nothing happened" is checked after a later change from the same page has
arrived (the server relays one page's messages in order).
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pytest
from playwright.async_api import Browser, Locator, Page, WebSocket, expect

from annotations.measure import Calibration, ImageInfo, measure
from annotations.schema import validate_annotation
from tests.browser.test_join_chat import _post, _redeem

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/annot.png"
IMAGE = 512  # the demo image is 512 x 512 pixels, Pixel Spacing 0.5 mm
WAIT_MS = 10_000

Point = tuple[float, float]


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


async def _guest(
    browser: Browser,
    server: Any,
    room_id: str,
    code: str,
    name: str,
    sent: list[bytes] | None = None,
) -> Page:
    """A guest's page, joined and synced; ``sent`` collects the binary websocket frames it
    sends (socket.io packets, msgpack)."""
    context = await browser.new_context(locale="en-US", viewport={"width": 1200, "height": 1100})
    await context.add_init_script("window.__consultdTestHooks = true")
    page = await context.new_page()
    if sent is not None:

        def on_socket(ws: WebSocket) -> None:
            ws.on("framesent", lambda frame: sent.append(frame) if type(frame) is bytes else None)

        page.on("websocket", on_socket)
    await page.goto(f"{server.url}/r/{room_id}")
    await _redeem(page, code, name)
    # Generous: on CI's 2 cores the socket may connect after a busy test's tail.
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )
    await expect(page.get_by_test_id("annotation-canvas")).to_be_visible()
    await expect(page.get_by_test_id("tool-line")).to_be_enabled()
    await page.wait_for_function("() => window.__consultdAnnotations?.synced() === true")
    return page


@dataclass
class Pair:
    a: Page
    b: Page
    errors: list[str] = field(default_factory=list)
    #: The socket.io packets A's page sent.
    a_sent: list[bytes] = field(default_factory=list)


@pytest.fixture
async def pair(server: Any, browser: Browser) -> AsyncIterator[Pair]:
    """Dr A and Dr B, two participants (not the host) in one room."""
    room_id, code = await _room_with_code(server)
    a_sent: list[bytes] = []
    a, b = await asyncio.gather(
        _guest(browser, server, room_id, code, "Dr A", a_sent),
        _guest(browser, server, room_id, code, "Dr B"),
    )
    p = Pair(a, b, a_sent=a_sent)
    for page in (a, b):
        page.on("pageerror", lambda e: p.errors.append(str(e)))
    yield p
    for page in (a, b):
        await page.context.close()
    assert not p.errors, p.errors


# ---------------------------------------------------------------- helpers


async def _at(page: Page, p: Point) -> Point:
    """Page coordinates of image pixel coordinates ``p``."""
    canvas = page.get_by_test_id("annotation-canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    assert box is not None
    return box["x"] + p[0] * box["width"] / IMAGE, box["y"] + p[1] * box["height"] / IMAGE


async def _drag(page: Page, path: list[Point], steps: int = 6) -> None:
    x, y = await _at(page, path[0])
    await page.mouse.move(x, y)
    await page.mouse.down()
    for p in path[1:]:
        x, y = await _at(page, p)
        await page.mouse.move(x, y, steps=steps)
    await page.mouse.up()


async def _click(page: Page, p: Point) -> None:
    x, y = await _at(page, p)
    await page.mouse.click(x, y)


async def _annotations(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.__consultdAnnotations.annotations()")
    return result


async def _wait_for(page: Page, predicate: str, arg: Any = None) -> Any:
    """Wait until the JS ``predicate(annotations, arg)`` is truthy; return its value."""
    handle = await page.wait_for_function(
        f"([arg]) => {{ const m = window.__consultdAnnotations.annotations();"
        f" return ({predicate})(m, arg); }}",
        arg=[arg],
        timeout=WAIT_MS,
    )
    return await handle.json_value()


def _items(page: Page) -> Locator:
    return page.get_by_test_id("annotation-list").get_by_test_id("annotation-item")


# Whether two point lists are equal within 0.05 px (the canvas may not be exactly 512 CSS px).
SAME_POINTS = """(a, b) => !!a && a.length === b.length
    && a.every((p, i) => Math.abs(p[0] - b[i][0]) < 0.05 && Math.abs(p[1] - b[i][1]) < 0.05)"""


async def _wait_points(page: Page, annotation_id: str, points: list[list[float]]) -> None:
    """Wait until the annotation's points are ``points``."""
    await _wait_for(
        page,
        f"(m, [id, pts]) => ({SAME_POINTS})(m[id]?.geometry.points, pts)",
        [annotation_id, points],
    )


def _item(page: Page, kind: str) -> Locator:
    return page.locator(f'[data-testid="annotation-item"][data-kind="{kind}"]')


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return float(m.group(1).replace(",", ""))


async def _assert_measured_as_server(page: Page) -> None:
    """The page's measurements equal annotations/measure.py's on the page's own pixels."""
    hooks = "window.__consultdAnnotations"
    info = await page.evaluate(f"() => {hooks}.phantom()")
    got = await page.evaluate(f"() => {hooks}.measurements()")
    shared = await _annotations(page)
    raw = base64.b64decode(info["pixels"])
    pixels = np.frombuffer(raw, dtype="<i2").reshape(info["rows"], info["columns"])
    image = ImageInfo(
        Calibration.from_pixel_spacing(info["pixelSpacing"]),
        pixels,
        info["slope"],
        info["intercept"],
        modality="CT",
    )
    assert got.keys() == shared.keys()
    for annotation_id, value in shared.items():
        server = measure(validate_annotation(value), image)
        mine = got[annotation_id]
        where = (value["kind"], server, mine)
        for py_key, ts_key in (("length", "length"), ("angle_deg", "angleDeg"), ("area", "area")):
            assert (py_key in server) == (ts_key in mine), where
            if py_key in server:
                assert mine[ts_key] == pytest.approx(server[py_key], rel=1e-12), where
        assert mine.get("calibration") == server.get("calibration"), where
        assert ("n_pixels" in server) == ("stats" in mine), where
        if "n_pixels" in server:
            stats = mine["stats"]
            assert stats["nPixels"] == server["n_pixels"] > 0, where
            for key in ("mean", "min", "max"):
                assert stats[key] == pytest.approx(server[key], rel=1e-12), where
            assert stats["sd"] == pytest.approx(server["sd"], rel=1e-9), where
            assert stats["unit"] == server["unit"] == "HU", where


async def _tool(page: Page, testid: str) -> None:
    await page.get_by_test_id(testid).click()
    await expect(page.get_by_test_id(testid)).to_have_attribute("aria-pressed", "true")


# ---------------------------------------------------------------- tests


async def test_line_is_shared_and_undone(pair: Pair) -> None:
    a, b = pair.a, pair.b
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

    items_a, items_b = _items(a), _items(b)
    await expect(items_a).to_have_count(1)
    await expect(items_b).to_have_count(1, timeout=WAIT_MS)
    await expect(items_b.first).to_have_attribute("data-kind", "line")
    # Half the canvas width in image pixels (512 px wide image), at 0.5 mm per pixel.
    await expect(items_b.first).to_contain_text("256.0 px")
    await expect(items_b.first).to_contain_text("128.0 mm")
    await expect(items_b.first).to_contain_text("by Dr A")
    # The demo phantom is not one of the room's images: no DICOM SR of it.
    await expect(b.get_by_test_id("export-sr")).to_be_hidden()
    await a.screenshot(path=SCREENSHOT, full_page=True)

    # B cannot undo A's stroke; A's undo removes it everywhere, and redo brings it back.
    await expect(b.get_by_test_id("undo")).to_be_disabled()
    await a.get_by_test_id("undo").click()
    await expect(items_a).to_have_count(0)
    await expect(items_b).to_have_count(0, timeout=WAIT_MS)
    await a.get_by_test_id("redo").click()
    await expect(items_b).to_have_count(1, timeout=WAIT_MS)


async def test_every_kind_is_shared_with_its_measurement(pair: Pair) -> None:
    a, b = pair.a, pair.b

    # Arrow: 100 px long, 50 mm.
    await _tool(a, "tool-arrow")
    await _drag(a, [(100, 40), (200, 40)])
    await expect(_item(b, "arrow")).to_contain_text("50.0 mm", timeout=WAIT_MS)

    # Polyline: an abandoned one (Escape), then 40 + 30 + 30 px, finished by a double-click.
    await _tool(a, "tool-polyline")
    await _click(a, (20, 480))
    await _click(a, (80, 480))
    await a.keyboard.press("Escape")
    for p in [(60, 80), (100, 80), (100, 110)]:
        await _click(a, p)
    x, y = await _at(a, (130, 110))
    await a.mouse.dblclick(x, y)
    await expect(_item(b, "polyline")).to_contain_text("50.0 mm", timeout=WAIT_MS)
    await _wait_for(
        b,
        f"(m, pts) => Object.values(m).some((v) => v.kind === 'polyline'"
        f" && ({SAME_POINTS})(v.geometry.points, pts))",
        [[60, 80], [100, 80], [100, 110], [130, 110]],
    )

    # Angle: arm end, vertex, arm end: a right angle.
    await _tool(a, "tool-angle")
    for p in [(300, 470), (360, 470), (360, 420)]:
        await _click(a, p)
    await expect(_item(b, "angle")).to_contain_text("90.0°", timeout=WAIT_MS)

    # Rectangle in the body's soft tissue (40 HU): 80 x 60 px = 40 x 30 mm.
    await _tool(a, "tool-rect")
    await _drag(a, [(216, 110), (296, 170)])
    rect = _item(b, "rectangle")
    await expect(rect).to_contain_text("1,200.0 mm²", timeout=WAIT_MS)
    assert abs(_number(await rect.inner_text(), r"mean (-?[\d.,]+) HU") - 40) < 2

    # Ellipse inside the fat insert (-100 HU), and a rectangle inside the bone (700 HU).
    await _tool(a, "tool-ellipse")
    await _drag(a, [(135, 205), (185, 255)])
    ellipse = _item(b, "ellipse")
    await expect(ellipse).to_contain_text("490.9 mm²", timeout=WAIT_MS)  # pi/4 x 25 x 25 mm
    assert abs(_number(await ellipse.inner_text(), r"mean (-?[\d.,]+) HU") + 100) < 2
    await _tool(a, "tool-rect")
    await _drag(a, [(335, 215), (370, 245)])
    bone = _item(b, "rectangle").filter(has_text="262.5 mm²")
    await expect(bone).to_have_count(1, timeout=WAIT_MS)
    assert abs(_number(await bone.inner_text(), r"mean (-?[\d.,]+) HU") - 700) < 3

    # Freehand: an open stroke (a length), then one that ends at its start (a region in
    # the water insert, 0 HU).
    await _tool(a, "tool-freehand")
    await _drag(a, [(420, 300), (450, 320), (480, 300)])
    await expect(_item(b, "freehand").filter(has_text="Freehand")).to_have_count(1, timeout=WAIT_MS)
    await _drag(a, [(236, 330), (276, 330), (276, 370), (236, 370), (236, 331)])
    region = _item(b, "freehand").filter(has_text="Freehand region")
    await expect(region).to_contain_text("400.0 mm²", timeout=WAIT_MS)  # 40 x 40 px
    assert abs(_number(await region.inner_text(), r"mean (-?[\d.,]+) HU")) < 2
    closed = await _wait_for(
        b,
        "(m) => Object.values(m).filter((v) => v.kind === 'freehand')"
        ".map((v) => v.geometry.closed)",
    )
    assert sorted(closed) == [False, True]

    # Point marker, and a text label typed into the prompt.
    await _tool(a, "tool-point")
    await _click(a, (400, 100))
    await expect(_item(b, "point")).to_contain_text("x 400.0, y 100.0 px", timeout=WAIT_MS)
    await _tool(a, "tool-text")
    await _click(a, (40, 300))
    await a.get_by_test_id("annotation-text-input").fill("Lesion A")
    await a.get_by_test_id("annotation-text-input").press("Enter")
    await expect(_item(b, "text")).to_contain_text("Lesion A", timeout=WAIT_MS)

    # Everything arrived once (the abandoned polyline is gone), A's colour, A's name.
    await expect(_items(b)).to_have_count(10)
    shared = await _annotations(b)
    assert sorted(v["kind"] for v in shared.values()) == [
        "angle",
        "arrow",
        "ellipse",
        "freehand",
        "freehand",
        "point",
        "polyline",
        "rectangle",
        "rectangle",
        "text",
    ]
    assert len({v["author"] for v in shared.values()}) == 1
    assert len({v["style"]["color"] for v in shared.values()}) == 1
    text = next(v for v in shared.values() if v["kind"] == "text")
    assert text["geometry"]["text"] == "Lesion A" and text["style"]["fontSize"] == 18
    await expect(_items(b).first).to_contain_text("by Dr A")
    # What the browser shows is what the server's annotations/measure.py computes.
    await _assert_measured_as_server(b)
    await a.screenshot(path=SCREENSHOT, full_page=True)


async def test_pointer_is_shared(pair: Pair) -> None:
    a, b = pair.a, pair.b
    x, y = await _at(a, (300, 200))
    await a.mouse.move(x, y)
    pointer = await b.wait_for_function(
        """() => window.__consultdAnnotations.pointers().find(
            (p) => p.name === 'Dr A' && Math.abs(p.x - 300) < 1 && Math.abs(p.y - 200) < 1)""",
        timeout=WAIT_MS,
    )
    color = (await pointer.json_value())["color"]
    assert re.fullmatch(r"#[0-9a-f]{6}", color)
    # Pointers go without an ack (docs/protocol.md), updates and sync with one.
    y_events = [
        packet
        for packet in map(msgpack.unpackb, pair.a_sent)
        if packet.get("type") == 2 and packet["data"][0] == "y"
    ]
    awareness = [e for e in y_events if e["data"][1]["data"][0] == 1]
    assert awareness and all("id" not in e for e in awareness)
    assert all("id" in e for e in y_events if e["data"][1]["data"][0] == 0)

    x, y = await _at(a, (120, 330))
    await a.mouse.move(x, y, steps=5)
    await b.wait_for_function(
        """() => window.__consultdAnnotations.pointers().some(
            (p) => p.name === 'Dr A' && Math.abs(p.x - 120) < 1 && Math.abs(p.y - 330) < 1)""",
        timeout=WAIT_MS,
    )
    # Leaving the image clears it.
    await a.mouse.move(2, 2)
    await b.wait_for_function(
        "() => window.__consultdAnnotations.pointers().length === 0", timeout=WAIT_MS
    )
    # And A sees B's.
    x, y = await _at(b, (50, 60))
    await b.mouse.move(x, y)
    await a.wait_for_function(
        "() => window.__consultdAnnotations.pointers().some((p) => p.name === 'Dr B')",
        timeout=WAIT_MS,
    )


async def test_guest_cannot_delete_or_move_anothers_annotation(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await _tool(a, "tool-rect")
    await _drag(a, [(100, 100), (160, 140)])
    rect_id = await _wait_for(a, "(m) => Object.values(m).find((v) => v.kind === 'rectangle')?.id")
    drawn = (await _annotations(a))[rect_id]
    await _wait_points(b, rect_id, drawn["geometry"]["points"])

    # B selects it in the list: read-only, no delete; the Delete key does nothing.
    await _item(b, "rectangle").get_by_role("button").click()
    await expect(_item(b, "rectangle")).to_have_attribute("data-selected", "true")
    await expect(_item(b, "rectangle")).to_have_attribute("data-editable", "false")
    await expect(b.get_by_test_id("annotation-read-only")).to_be_visible()
    await expect(b.get_by_test_id("delete-annotation")).to_be_disabled()
    await b.keyboard.press("Delete")
    # Dragging it with the select tool does not move it either.
    await expect(b.get_by_test_id("tool-select")).to_have_attribute("aria-pressed", "true")
    await _drag(b, [(130, 120), (230, 220)])

    # B's own line after that reaches A: anything B sent before it has too.
    await _tool(b, "tool-line")
    await _drag(b, [(300, 300), (400, 300)])
    await _wait_for(a, "(m) => Object.values(m).some((v) => v.kind === 'line')")
    for page in (a, b):
        assert (await _annotations(page))[rect_id] == drawn

    # Bypassing the UI does not help: the server refuses the delete and B resyncs.
    await b.evaluate("(id) => window.__consultdAnnotations.rawDelete(id)", rect_id)
    await _wait_for(b, "(m, id) => !!m[id] && window.__consultdAnnotations.synced()", rect_id)
    await expect(_items(b)).to_have_count(2)
    # Another line from B after the refusal: A still has the rectangle.
    await _drag(b, [(300, 350), (400, 350)])
    await _wait_for(a, "(m) => Object.values(m).filter((v) => v.kind === 'line').length === 2")
    assert rect_id in await _annotations(a)
    await expect(_items(a)).to_have_count(3)


async def test_undo_of_an_edit_restores_the_geometry(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await _tool(a, "tool-rect")
    await _drag(a, [(100, 100), (160, 140)])
    rect_id = await _wait_for(b, "(m) => Object.values(m).find((v) => v.kind === 'rectangle')?.id")
    before = (await _annotations(a))[rect_id]

    # Move it: select tool, drag from inside by (+40, +20).
    await _tool(a, "tool-select")
    await _drag(a, [(130, 120), (170, 140)])
    moved = [[140, 120], [200, 160]]
    await _wait_points(b, rect_id, moved)
    after = (await _annotations(b))[rect_id]
    assert after["author"] == before["author"] and after["created"] == before["created"]
    assert after["updated"] > before["updated"]

    # Reshape it by its bottom-right handle.
    await _drag(a, [(200, 160), (220, 190)])
    reshaped = [[140, 120], [220, 190]]
    await _wait_points(b, rect_id, reshaped)

    # Ctrl+Z undoes the reshape, the Undo button the move: both pages follow.
    await a.get_by_test_id("annotation-canvas").focus()
    await a.keyboard.press("Control+z")
    for page in (a, b):
        await _wait_points(page, rect_id, moved)
    await a.get_by_test_id("undo").click()
    original = before["geometry"]["points"]
    for page in (a, b):
        await _wait_points(page, rect_id, original)
    # Redo (Ctrl+Shift+Z) moves it again.
    await a.keyboard.press("Control+Shift+z")
    await _wait_points(b, rect_id, moved)

    # The author deletes it (selected, Delete key); undo brings it back.
    await _click(a, (170, 140))
    await expect(_item(a, "rectangle")).to_have_attribute("data-selected", "true")
    await a.keyboard.press("Delete")
    await expect(_items(b)).to_have_count(0, timeout=WAIT_MS)
    await a.get_by_test_id("undo").click()
    await expect(_items(b)).to_have_count(1, timeout=WAIT_MS)
