"""The browser viewer on real images: Dr A shares a small synthetic CT series through the
file picker (one file is not an image and is refused with its reason; sharing two slices
again skips them by their hash); Dr B's viewer shows the series with its thumbnail and the
real pixels (window/level applied in the browser from the raw frames); A presents ("follow
me"), moves to another slice, picks the lung window and zooms, and B's viewer follows. The
annotation layer sits on the real image: a line reads millimetres from Pixel Spacing and a
rectangle ROI reads HU, equal to annotations/measure.py (numpy) on the same file's values.

Pages expose their state through test hooks (``window.__consultdImaging`` and
``window.__consultdAnnotations``, installed because the init script sets
``window.__consultdTestHooks``). Every wait is for a condition.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from playwright.async_api import Page, expect

from annotations.measure import Calibration, ImageInfo, measure
from annotations.schema import validate_annotation
from tests.browser.test_annotations import Pair, _items, _tool, _wait_for, pair  # noqa: F401
from tests.imaging.dicomgen import ct_series, write_series
from tests.utils import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, web_client_dist: Path) -> Any:
    """A server of this module's own: share-code redemptions are limited per address (10
    a minute), and every browser test comes from 127.0.0.1."""
    srv = ServerProcess(tmp_path_factory.mktemp("imaging-data")).start()
    yield srv
    srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()


pytestmark = pytest.mark.browser

SIDE = 256  # the synthetic CT is 256 x 256, Pixel Spacing 0.7 mm, HU = stored - 1024
SLICES = 8
WAIT_MS = 15_000
SCREENSHOT = "/tmp/imaging.png"

# Image pixel positions in the synthetic CT (tests/imaging/dicomgen.py `phantom`): the
# middle of the right lung (-850 HU), soft tissue above the lungs (40 HU), the spine (700 HU).
LUNG = (SIDE / 2 + 0.18 * SIDE, SIDE / 2)
TISSUE = (SIDE / 2, SIDE / 2 - 0.28 * SIDE)
SPINE = (SIDE / 2, SIDE / 2 + 0.22 * SIDE)


def _linear(hu: float, center: float, width: float) -> float:
    """DICOM's LINEAR window, as the viewer applies it."""
    lo = center - 0.5 - (width - 1) / 2
    if hu <= lo:
        return 0
    if hu > center - 0.5 + (width - 1) / 2:
        return 255
    return ((hu - (center - 0.5)) / (width - 1) + 0.5) * 255


async def _state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.__consultdImaging.state()")
    return result


async def _wait_state(page: Page, predicate: str, arg: Any = None) -> Any:
    """Wait until the JS ``predicate(viewer state, arg)`` is truthy; return its value."""
    handle = await page.wait_for_function(
        f"([arg]) => {{ const s = window.__consultdImaging.state();"
        f" return ({predicate})(s, arg); }}",
        arg=[arg],
        timeout=WAIT_MS,
    )
    return await handle.json_value()


async def _sample(page: Page, points: list[tuple[float, float]]) -> list[list[int]]:
    """[r, g, b] of what the canvas shows at image pixel positions."""
    # The layer redraws at the next animation frame: let one pass.
    await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r)))")
    result: list[list[int]] = await page.evaluate(
        "(pts) => window.__consultdImaging.sample(pts)", [list(p) for p in points]
    )
    return result


async def _grey(page: Page, points: list[tuple[float, float]]) -> list[int]:
    rgb = await _sample(page, points)
    assert all(p[0] == p[1] == p[2] for p in rgb), rgb
    return [p[0] for p in rgb]


async def _at(page: Page, p: tuple[float, float]) -> tuple[float, float]:
    """Page coordinates of image pixel ``p``: the image fits the canvas at zoom 1, and the
    image point at the canvas centre is (width / 2 - pan_x, height / 2 - pan_y)."""
    canvas = page.get_by_test_id("annotation-canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    assert box is not None
    image = await page.evaluate("() => window.__consultdAnnotations.image()")
    s = await _state(page)
    w, h = image["width"], image["height"]
    scale = min(box["width"] / w, box["height"] / h) * s["zoom"]
    return (
        box["x"] + box["width"] / 2 + scale * (p[0] - w / 2 + s["pan_x"]),
        box["y"] + box["height"] / 2 + scale * (p[1] - h / 2 + s["pan_y"]),
    )


async def _drag(page: Page, a: tuple[float, float], b: tuple[float, float]) -> None:
    x, y = await _at(page, a)
    await page.mouse.move(x, y)
    await page.mouse.down()
    x, y = await _at(page, b)
    await page.mouse.move(x, y, steps=6)
    await page.mouse.up()


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ct")
    files = write_series(ct_series(SLICES, rows=SIDE, cols=SIDE), folder)
    (folder / "notes.txt").write_text("not an image\n")
    return files


def _hu(path: Path) -> ImageInfo:
    ds = pydicom.dcmread(path)
    return ImageInfo(
        Calibration.from_pixel_spacing([float(v) for v in ds.PixelSpacing]),
        ds.pixel_array,
        float(ds.RescaleSlope),
        float(ds.RescaleIntercept),
        modality="CT",
    )


async def test_series_is_shared_followed_and_measured(pair: Pair, ct_files: list[Path]) -> None:  # noqa: F811
    a, b = pair.a, pair.b
    notes = ct_files[0].parent / "notes.txt"

    # A shares the series (and a text file) through the file picker.
    await a.get_by_test_id("imaging-file-input").set_input_files([*ct_files, notes])
    summary = a.get_by_test_id("imaging-summary")
    await expect(summary).to_contain_text(f"Done: {SLICES} shared", timeout=WAIT_MS)
    await expect(summary).to_contain_text("1 refused")
    refused = a.get_by_test_id("imaging-refused")
    await expect(refused).to_have_count(1)
    await expect(refused).to_contain_text("notes.txt")
    await expect(refused).to_contain_text("not a DICOM file")

    # B sees the series, its thumbnail and the real image (window 40/400 from the file).
    item = b.get_by_test_id("series-item")
    await expect(item).to_have_count(1, timeout=WAIT_MS)
    await expect(item).to_have_attribute("data-instances", str(SLICES), timeout=WAIT_MS)
    await expect(item).to_contain_text("CT")
    await b.wait_for_function(
        "() => document.querySelector('[data-testid=series-item] img')?.naturalWidth > 0",
        timeout=WAIT_MS,
    )
    shown = await _wait_state(b, "(s, n) => s.shown && s.count === n && s", SLICES)
    assert (shown["window_center"], shown["window_width"]) == (40, 400)
    image = await b.evaluate("() => window.__consultdAnnotations.image()")
    assert not image["demo"] and image["key"] == shown["key"]
    assert image["anchor"]["instance_uid"] == shown["sop_uid"]
    assert image["pixelSpacing"] == [0.7, 0.7]
    lung, tissue, spine = await _grey(b, [LUNG, TISSUE, SPINE])
    assert (lung, spine) == (0, 255) and abs(tissue - _linear(40, 40, 400)) < 12, tissue

    # Sharing two of the files again: found by their hash, not sent.
    await a.get_by_test_id("imaging-file-input").set_input_files(ct_files[:2])
    await expect(a.get_by_test_id("imaging-summary").first).to_contain_text(
        "Done: 0 shared, 2 already there", timeout=WAIT_MS
    )

    # A presents, goes to slice 6 with the keyboard, picks the lung window and zooms in.
    await a.get_by_test_id("follow-toggle").click()
    await expect(a.get_by_test_id("follow-toggle")).to_have_attribute("aria-pressed", "true")
    await expect(b.get_by_test_id("follow-status")).to_contain_text("Following Dr A")
    await a.get_by_test_id("annotation-canvas").focus()
    await a.keyboard.press("Home")
    for _ in range(5):
        await a.keyboard.press("ArrowDown")
    await a.get_by_test_id("preset-lung").click()
    await a.get_by_test_id("zoom-in").click()
    mine = await _wait_state(
        a,
        "(s) => s.index === 5 && s.window_center === -600 && s.zoom > 1 && s",
    )
    theirs = await _wait_state(
        b,
        "(s, m) => s.sop_uid === m.sop_uid && s.window_center === -600 && s.window_width === 1500"
        " && Math.abs(s.zoom - m.zoom) < 1e-3 && s.shown && s",
        mine,
    )
    assert theirs["index"] == 5 and theirs["key"] == mine["key"]
    # B's pixels are the same slice through the lung window, computed in B's browser.
    await a.get_by_test_id("zoom-fit").click()
    await _wait_state(b, "(s) => s.zoom === 1")
    lung, tissue = await _grey(b, [LUNG, TISSUE])
    assert abs(lung - _linear(-850, -600, 1500)) < 12 and abs(tissue - _linear(40, -600, 1500)) < 12
    await a.screenshot(path=SCREENSHOT, full_page=True)

    # A line on the real image: 100 px at 0.7 mm per pixel, anchored to the slice.
    await _tool(a, "tool-line")
    await _drag(a, (60, 40), (160, 40))
    line = _items(b).filter(has_text="Line")
    await expect(line).to_contain_text("70.0 mm", timeout=WAIT_MS)
    calibration = b.get_by_test_id("annotation-calibration-short")
    await expect(calibration).to_contain_text("Pixel Spacing 0.7 mm")

    # A rectangle in the soft tissue above the lungs: HU from B's raw values, as numpy has them.
    await _tool(a, "tool-rect")
    await _drag(a, (100, 48), (156, 72))
    rect = _items(b).filter(has_text="Rectangle")
    await expect(rect).to_contain_text("HU", timeout=WAIT_MS)
    # B shows the drag's intermediate shapes too: wait for A's final ones.
    final = await _wait_for(a, "(m) => Object.keys(m).length === 2 && m")
    shared = await _wait_for(
        b,
        "(m, want) => Object.keys(want).every((k) => m[k]"
        " && JSON.stringify(m[k].geometry) === JSON.stringify(want[k].geometry)) && m",
        final,
    )
    got = await b.evaluate("() => window.__consultdAnnotations.measurements()")
    info = _hu(ct_files[theirs["index"]])  # the stack is in Instance Number order, file i is i + 1
    for annotation_id, value in shared.items():
        assert value["anchor"] == {
            "study_uid": image["anchor"]["study_uid"],
            "series_uid": image["anchor"]["series_uid"],
            "instance_uid": theirs["sop_uid"],
            "frame": 1,
        }
        expected = measure(validate_annotation(value), info)
        mine_m = got[annotation_id]
        if value["kind"] == "line":
            assert mine_m["length"] == pytest.approx(expected["length"], rel=1e-12)
            assert mine_m["calibration"] == "PixelSpacing"
        else:
            stats = mine_m["stats"]
            assert stats["nPixels"] == expected["n_pixels"] > 0
            assert stats["unit"] == expected["unit"] == "HU"
            for key in ("mean", "min", "max"):
                assert stats[key] == pytest.approx(expected[key], rel=1e-12), key
            assert stats["sd"] == pytest.approx(expected["sd"], rel=1e-9)
            assert abs(stats["mean"] - 40) < 3
            # The list shows that mean (the text follows the document within a frame).
            for _ in range(WAIT_MS // 50):
                text = await rect.inner_text()
                mean = float(re.search(r"mean (-?[\d.,]+) HU", text).group(1))  # type: ignore[union-attr]
                if abs(stats["mean"] - mean) < 0.06:
                    break
                await asyncio.sleep(0.05)
            assert abs(stats["mean"] - mean) < 0.06, (text, stats["mean"])
    # The annotations live on this slice: on the next one the list is empty, and back again
    # (Escape first: with a shape selected, the arrow keys nudge it).
    await a.get_by_test_id("annotation-canvas").focus()
    await a.keyboard.press("Escape")
    await a.keyboard.press("ArrowDown")
    await _wait_state(b, "(s) => s.index === 6")
    await expect(_items(b)).to_have_count(0, timeout=WAIT_MS)
    await a.keyboard.press("ArrowUp")
    await expect(_items(b)).to_have_count(2, timeout=WAIT_MS)

    # B, a guest, downloads the measurements as a DICOM SR: the viewer's values, read back
    # by highdicom as a TID 1500 report on this slice.
    export = b.get_by_test_id("export-sr")
    await expect(export).to_be_visible()
    async with b.expect_download(timeout=WAIT_MS) as download_info:
        await export.click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".dcm")
    sr = hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(await download.path()))
    (length,) = sr.content.get_image_measurement_groups()
    (region,) = sr.content.get_planar_roi_measurement_groups()
    by_kind = {shared[k]["kind"]: k for k in shared}
    assert length.tracking_identifier == by_kind["line"]
    assert region.tracking_identifier == by_kind["rectangle"]
    (m,) = length.get_measurements()
    assert m.value == pytest.approx(got[by_kind["line"]]["length"], rel=1e-9)
    region_values = {x.name.meaning: x.value for x in region.get_measurements()}
    assert region_values["Mean"] == pytest.approx(got[by_kind["rectangle"]]["stats"]["mean"])
    ref = region.roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == theirs["sop_uid"]
    await expect(b.get_by_test_id("export-note")).to_have_text("")  # no error shown


async def test_lab_image_is_shown_as_is(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    """A photo of a lab result (PNG) becomes a secondary capture, shown in its colours;
    without a pixel spacing, lengths are in pixels and there are no CT presets."""
    a, b = pair.a, pair.b
    stripes = np.zeros((90, 120, 3), np.uint8)  # OpenCV writes BGR
    stripes[:30] = (0, 0, 255)
    stripes[30:60] = (0, 200, 0)
    stripes[60:] = (255, 0, 0)
    path = tmp_path / "lab result.png"
    assert cv2.imwrite(str(path), stripes)
    await a.get_by_test_id("imaging-file-input").set_input_files(path)
    await expect(a.get_by_test_id("imaging-summary")).to_contain_text(
        "Done: 1 shared", timeout=WAIT_MS
    )

    await expect(b.get_by_test_id("series-item")).to_contain_text("OT", timeout=WAIT_MS)
    await _wait_state(b, "(s) => s.shown && s.count === 1")
    red, green, blue = await _sample(b, [(60, 15), (60, 45), (60, 75)])
    for got, want in ((red, (255, 0, 0)), (green, (0, 200, 0)), (blue, (0, 0, 255))):
        assert all(abs(g - w) <= 2 for g, w in zip(got, want, strict=True)), (got, want)
    await expect(b.get_by_test_id("preset-lung")).to_be_hidden()
    await expect(b.get_by_test_id("annotation-calibration")).to_contain_text(
        "states no pixel spacing"
    )

    await _tool(a, "tool-line")
    await _drag(a, (10, 45), (110, 45))
    await expect(_items(b).filter(has_text="Line")).to_contain_text("100.0 px", timeout=WAIT_MS)


async def test_a_large_file_goes_in_resumable_chunks(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    """Over 16 MiB the browser uses the resumable upload (chunks at an offset)."""
    a = pair.a
    [path] = write_series(ct_series(1, rows=3072, cols=3072), tmp_path)
    assert path.stat().st_size > 16 * 1024 * 1024
    chunks: list[str] = []
    a.on("request", lambda r: chunks.append(r.url) if "/imaging/uploads/" in r.url else None)
    await a.get_by_test_id("imaging-file-input").set_input_files(path)
    await expect(a.get_by_test_id("imaging-summary")).to_contain_text(
        "Done: 1 shared", timeout=60_000
    )
    assert len([u for u in chunks if "offset=" in u]) >= 5  # 18 MiB in 4 MiB chunks


async def test_a_dropped_chunk_resumes_from_the_servers_offset(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    """A chunk lost to the network (the third one): the browser asks the server where it
    stopped and sends on from there, never from the start."""
    a = pair.a
    [path] = write_series(ct_series(1, rows=3072, cols=3072), tmp_path)
    seen: list[tuple[str, str]] = []
    a.on(
        "request",
        lambda r: seen.append((r.method, r.url)) if "/imaging/uploads/" in r.url else None,
    )
    patches = 0

    async def drop_third_chunk(route: Any) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches == 3:
                await route.abort("connectionreset")
                return
        await route.continue_()

    await a.route(re.compile(r".*/imaging/uploads/.*"), drop_third_chunk)
    try:
        await a.get_by_test_id("imaging-file-input").set_input_files(path)
        await expect(a.get_by_test_id("imaging-summary")).to_contain_text(
            "Done: 1 shared", timeout=60_000
        )
    finally:
        await a.unroute(re.compile(r".*/imaging/uploads/.*"))
    offsets = [int(m.group(1)) for _, u in seen if (m := re.search(r"offset=(\d+)", u))]
    chunk = 4 * 1024 * 1024
    # 0, 4, 8 (dropped), then the server's offset asked for (GET), then 8 again and on.
    assert offsets[:4] == [0, chunk, 2 * chunk, 2 * chunk], offsets
    assert offsets.count(0) == 1, offsets  # never started over
    assert [m for m, u in seen if "offset=" not in u].count("GET") >= 1, seen


async def test_a_whole_series_opens_at_its_middle_slice_first(
    pair: Pair,  # noqa: F811
    ct_files: list[Path],
) -> None:
    """A viewer opening a stored series shows, and fetches first, its middle slice, then
    goes outwards."""
    a, b = pair.a, pair.b
    await a.get_by_test_id("imaging-file-input").set_input_files(ct_files)
    await expect(a.get_by_test_id("imaging-summary")).to_contain_text(
        f"Done: {SLICES} shared", timeout=WAIT_MS
    )
    frames: list[str] = []
    b.on("request", lambda r: frames.append(r.url) if "/frames/" in r.url else None)
    # what the page before the reload was still fetching does not count
    b.on("framenavigated", lambda f: frames.clear() if f == b.main_frame else None)
    await b.reload()  # B comes back to a room where the whole series is stored
    await b.wait_for_function("() => window.__consultdImaging !== undefined", timeout=WAIT_MS)
    shown = await _wait_state(b, "(s, n) => s.shown && s.count === n && s", SLICES)
    assert shown["index"] == (SLICES - 1) // 2
    assert frames and f"/instances/{shown['sop_uid']}/frames/" in frames[0], frames[:3]
