"""annotations.render: each kind drawn where its geometry says, in its colour; fills
translucent; labels from the measurements; bounded work; PNG out."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from annotations.measure import Calibration, ImageInfo
from annotations.render import (
    FILL_ALPHA,
    MAX_SIDE,
    OverlayTooComplex,
    default_px_per_css,
    encode_png,
    measurement_label,
    render_overlay,
    render_png,
)
from annotations.schema import AnnotationError, validate_annotation

UID = "1.2.840.99.1"
RED = (255, 0, 0)


def note(
    kind: str,
    points: list[list[float]],
    color: str = "#ff0000",
    width: float = 1.0,
    *,
    ident: str = "a1",
    created: int = 1,
    fill: bool | None = None,
    closed: bool | None = None,
    text: str | None = None,
    font_size: float | None = None,
) -> dict[str, Any]:
    style: dict[str, Any] = {"color": color, "width": width}
    geometry: dict[str, Any] = {"points": points}
    if fill is not None:
        style["fill"] = fill
    if font_size is not None:
        style["fontSize"] = font_size
    if closed is not None:
        geometry["closed"] = closed
    if text is not None:
        geometry["text"] = text
    return {
        "id": ident,
        "author": "p1",
        "created": created,
        "updated": created,
        "kind": kind,
        "style": style,
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1},
        "geometry": geometry,
    }


def alpha(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return rgba[..., 3]


def test_a_horizontal_line_lights_its_row_in_its_colour() -> None:
    rgba = render_overlay([note("line", [[10.5, 20.5], [60.5, 20.5]])], 100, 50)
    assert rgba.shape == (50, 100, 4) and rgba.dtype == np.uint8
    row = rgba[20]
    lit = np.flatnonzero(row[:, 3] > 0)
    assert 9 <= lit.min() <= 11 and 59 <= lit.max() <= 62, lit
    # The pixels the line runs through: red, and nearly opaque.
    assert (row[12:59, 3] > 200).all()
    assert (row[12:59, :3] == RED).all()
    # Its neighbours get only the anti-aliased fringe; pixel centres are at +0.5.
    assert (rgba[19, 12:59, 3] < 100).all() and (rgba[21, 12:59, 3] < 100).all()
    assert not alpha(rgba)[23:].any()
    assert not row[:8, 3].any() and not row[64:, 3].any()
    assert rgba[45, 90].tolist() == [0, 0, 0, 0]


def test_sub_pixel_positions_move_the_ink() -> None:
    on_centre = alpha(render_overlay([note("line", [[10.5, 20.5], [60.5, 20.5]])], 100, 50))
    between = alpha(render_overlay([note("line", [[10.5, 21.0], [60.5, 21.0]])], 100, 50))
    assert on_centre[20, 30] > 3 * max(on_centre[19, 30], on_centre[21, 30])
    # Half-way between the centres of rows 20 and 21: split between them.
    assert abs(int(between[20, 30]) - int(between[21, 30])) < 40
    assert between[20, 30] > 100 and between[21, 30] > 100


def test_each_shape_keeps_its_own_colour_and_later_ones_are_on_top() -> None:
    rgba = render_overlay(
        [
            note("line", [[50.5, 5.5], [50.5, 45.5]], "#0000ff", ident="b", created=2),
            note("line", [[5.5, 25.5], [95.5, 25.5]], "#00ff00", ident="a", created=1),
        ],
        100,
        50,
    )
    assert rgba[10, 50, :3].tolist() in ([0, 0, 255], [0, 0, 254])  # rounding of un-premultiply
    assert rgba[25, 20, :3].tolist() == [0, 255, 0]
    crossing = rgba[25, 50].tolist()  # the blue line, created later, is drawn over
    assert crossing[2] > 200 and crossing[1] < 60 and crossing[3] > 200


def test_a_filled_rectangle_is_translucent_inside_and_outlined() -> None:
    filled = render_overlay(
        [note("rectangle", [[80, 40], [20, 10]], "#00ff00", fill=True)], 100, 50
    )
    inside = filled[15:36, 25:76]
    assert (inside[..., :3] == (0, 255, 0)).all()
    assert (abs(inside[..., 3].astype(int) - round(FILL_ALPHA * 255)) <= 1).all()
    assert filled[10, 50, 3] > 150 and filled[25, 20, 3] > 150  # the outline
    assert not alpha(filled)[45:].any() and not alpha(filled)[:, :15].any()
    hollow = render_overlay([note("rectangle", [[20, 10], [80, 40]], "#00ff00")], 100, 50)
    assert not alpha(hollow)[15:36, 25:76].any()
    assert hollow[10, 50, 3] > 150


def test_a_filled_ellipse_and_a_closed_freehand_region() -> None:
    ellipse = render_overlay([note("ellipse", [[10, 5], [90, 45]], "#ffff00", fill=True)], 100, 50)
    assert 0 < ellipse[25, 50, 3] < 128 and ellipse[25, 50, :3].tolist() == [255, 255, 0]
    assert ellipse[6, 12, 3] == 0  # inside the box, outside the ellipse
    assert ellipse[5, 50, 3] > 150 and ellipse[25, 10, 3] > 150  # the outline at its extremes
    region = note(
        "freehand", [[10, 10], [90, 10], [90, 40], [10, 40]], fill=True, closed=True, width=2
    )
    rgba = render_overlay([region], 100, 50)
    assert 0 < rgba[25, 50, 3] < 128
    assert (rgba[12:20, 10, 3] > 100).all()  # the closing edge
    region["geometry"]["closed"] = False
    region["style"].pop("fill")
    open_stroke = render_overlay([region], 100, 50)
    assert not alpha(open_stroke)[12:20, 5:15].any() and open_stroke[15, 50, 3] == 0


def test_an_arrow_has_a_head_and_a_line_does_not() -> None:
    arrow = render_overlay([note("arrow", [[10, 30], [90, 30]], "#0000ff")], 100, 50)
    line = render_overlay([note("line", [[10, 30], [90, 30]], "#0000ff")], 100, 50)
    # Near the tip the head is several pixels wide (the axis is y = 30, between rows 29
    # and 30); along the shaft and on a line, two rows.
    assert arrow[28:32, 85, 3].min() > 200 and arrow[28:32, 85, :3].tolist() == [[0, 0, 255]] * 4
    assert arrow[27, 85, 3] > 0 and arrow[32, 85, 3] > 0
    assert line[27, 85, 3] == 0 and line[32, 85, 3] == 0
    assert arrow[27, 20, 3] == 0 and arrow[32, 20, 3] == 0
    # The tip is where the head point is, not beyond.
    assert arrow[29, 88, 3] > 0 and not alpha(arrow)[:, 92:].any()


def test_angle_point_and_polyline() -> None:
    rgba = render_overlay(
        [
            note("angle", [[10, 45], [10, 5], [90, 5]], "#ff00ff", ident="a"),
            note("point", [[60.5, 30.5]], "#00ffff", 3, ident="p"),
            note("polyline", [[20, 20], [40, 40], [60, 20]], "#ffffff", ident="l"),
        ],
        200,
        100,
    )
    assert rgba[30, 9, :3].tolist() == [255, 0, 255] and rgba[4, 60, :3].tolist() == [255, 0, 255]
    assert rgba[30, 60, :3].tolist() == [0, 255, 255] and rgba[30, 60, 3] == 255
    assert rgba[30, 30, :3].tolist() == [255, 255, 255] and rgba[29, 50, 3] > 200


def test_text_draws_inside_its_box_with_a_halo() -> None:
    rgba = render_overlay(
        [note("text", [[20, 40]], "#ffffff", text="Hi é\tthere", font_size=14)], 150, 60
    )
    ys, xs = np.nonzero(alpha(rgba))
    # Anchored at the left end of the baseline: cap height ~10 px above, one line.
    assert 20 - 3 <= xs.min() and ys.min() >= 40 - 16 and ys.max() <= 40 + 7
    assert xs.max() > 60  # "Hi ?    there"
    white = (rgba[..., :3] > 180).all(axis=-1) & (alpha(rgba) > 200)  # over its halo
    dark = (rgba[..., :3] < 60).all(axis=-1) & (alpha(rgba) > 100)
    assert white[28:41, 20:30].any() and dark.any()
    two = render_overlay([note("text", [[5, 15]], "#ffffff", text="a\nb\r\nc")], 50, 60)
    rows = np.flatnonzero(alpha(two).any(axis=1))
    assert rows.max() - rows.min() > 30  # three lines


def test_measurement_labels() -> None:
    mm = ImageInfo(Calibration.from_pixel_spacing([0.5, 0.5]))
    line = validate_annotation(note("line", [[10.0, 20.0], [60.0, 20.0]]))
    assert measurement_label(line, ImageInfo()) == ["50.0 px"]
    assert measurement_label(line, mm) == ["25.0 mm"]
    detector = ImageInfo(Calibration.from_imager_pixel_spacing([0.2, 0.2]))
    assert measurement_label(line, detector) == ["10.0 mm (detector)"]
    rect = validate_annotation(note("rectangle", [[0.0, 0.0], [4.0, 2.0]]))
    assert measurement_label(rect, mm) == ["2.00 mm²"]
    angle = validate_annotation(note("angle", [[10.0, 0.0], [0.0, 0.0], [0.0, 10.0]]))
    assert measurement_label(angle, ImageInfo()) == ["90.0°"]
    flat = validate_annotation(note("angle", [[0.0, 0.0], [0.0, 0.0], [0.0, 10.0]]))
    assert measurement_label(flat, ImageInfo()) == []
    assert measurement_label(validate_annotation(note("point", [[1.0, 1.0]])), mm) == []
    pixels = np.full((10, 10), 100, dtype=np.int16)
    ct = ImageInfo(Calibration(), pixels, slope=1.0, intercept=-1024.0, modality="CT")
    assert measurement_label(rect, ct) == [
        "8.00 px²",
        "mean -924.0 HU SD 0.00",
        "min -924.0 max -924.0 n 8",
    ]
    off = validate_annotation(note("rectangle", [[50.0, 50.0], [60.0, 60.0]]))
    assert measurement_label(off, ct)[1:] == ["no pixel inside"]


def test_labels_are_drawn_by_measurable_shapes() -> None:
    rgba = render_overlay([note("line", [[10.5, 40.5], [40.5, 40.5]])], 100, 50)
    # Above-right of the line's end: the label's red glyphs and black halo.
    label = rgba[:38, 40:]
    assert (alpha(label) > 0).sum() > 30
    reddish = (label[..., 0] > 150) & (label[..., 1:3] < 60).all(axis=-1)
    assert (reddish & (alpha(label) > 128)).any()
    assert ((label[..., :3] == 0).all(axis=-1) & (alpha(label) > 128)).any()
    # No label for a shape wholly off the canvas.
    off = render_overlay([note("line", [[-500, -500], [-400, -500]])], 100, 50)
    assert not alpha(off).any()


def test_statistics_need_pixels_and_matching_shapes() -> None:
    region = note("rectangle", [[10, 10], [30, 30]])
    plain = render_overlay([region], 100, 50)
    stats = render_overlay([region], 100, 50, pixels=np.zeros((50, 100), dtype=np.uint16))
    assert alpha(stats).sum() > alpha(plain).sum()  # two more label lines
    with pytest.raises(ValueError, match="pixels"):
        render_overlay([region], 100, 50, pixels=np.zeros((100, 50)))
    with pytest.raises(ValueError, match="background"):
        render_overlay([region], 100, 50, background=np.zeros((50, 100), dtype=np.float32))


def test_composited_onto_a_background() -> None:
    grey = np.full((50, 100), 40, dtype=np.uint8)
    rgb = render_overlay([note("line", [[10.5, 20.5], [60.5, 20.5]])], 100, 50, background=grey)
    assert rgb.shape == (50, 100, 3)
    assert rgb[45, 90].tolist() == [40, 40, 40]
    assert rgb[20, 30, 0] > 200 and rgb[20, 30, 1] < 60
    colour = np.zeros((50, 100, 3), dtype=np.uint8)
    colour[..., 2] = 200
    rgb = render_overlay([note("line", [[10.5, 20.5], [60.5, 20.5]])], 100, 50, background=colour)
    assert rgb[45, 90].tolist() == [0, 0, 200]


@pytest.mark.parametrize(
    ("width", "height"),
    [(0, 10), (10, 0), (MAX_SIDE + 1, 10), (10, MAX_SIDE + 1), (-5, 10), (True, 10), (10.0, 10)],
)
def test_size_limits(width: Any, height: Any) -> None:
    with pytest.raises(ValueError, match="width|height"):
        render_overlay([], width, height)


def test_invalid_annotations_are_refused() -> None:
    bad = note("line", [[0, 0], [1, 1]])
    bad["style"]["color"] = "red"
    with pytest.raises(AnnotationError, match="style.color"):
        render_overlay([bad], 10, 10)


def test_stroke_width_follows_the_css_scale() -> None:
    assert default_px_per_css(512, 512) == 1.0
    assert default_px_per_css(4096, 2048) == 4.0
    thin = render_overlay([note("line", [[0, 100.5], [200, 100.5]], width=2)], 200, 200)
    thick = render_overlay(
        [note("line", [[0, 100.5], [200, 100.5]], width=2)], 200, 200, px_per_css=4.0
    )
    assert (alpha(thick)[:, 100] > 128).sum() >= 3 * (alpha(thin)[:, 100] > 128).sum()


def test_png_round_trips_through_cv2() -> None:
    notes = [note("line", [[10.5, 20.5], [60.5, 20.5]]), note("point", [[80, 40]], "#00ff00")]
    rgba = render_overlay(notes, 100, 50)
    png = render_png(notes, 100, 50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    bgra = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgra.shape == (50, 100, 4)
    assert np.array_equal(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), rgba)
    assert encode_png(rgba) == png
    rgb = cv2.imdecode(
        np.frombuffer(encode_png(rgba[..., :3].copy()), dtype=np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert rgb.shape == (50, 100, 3) and rgb[20, 30].tolist() == [0, 0, 255]  # BGR
    grey = cv2.imdecode(
        np.frombuffer(encode_png(rgba[..., 3].copy()), dtype=np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert grey.shape == (50, 100)


def _walk(n: int, seed: int, size: float) -> list[list[float]]:
    """A random walk of n points, rounded like the browser's (the 256 KiB cap)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 3, (n, 2))
    pts = np.clip(np.cumsum(steps, axis=0) + size / 2, 0, size)
    return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]


def test_a_ten_thousand_point_freehand_renders_in_bounded_time() -> None:
    stroke = note("freehand", _walk(10_000, 1, 512), width=3, closed=True, fill=True)
    start = time.perf_counter()
    rgba = render_overlay([stroke], 512, 512)
    assert time.perf_counter() - start < 2.0
    assert alpha(rgba).any()


def test_far_away_geometry_costs_nothing() -> None:
    rng = np.random.default_rng(2)
    far = [[float(x), float(y)] for x, y in np.round(rng.uniform(-1e6, 1e6, (10_000, 2)))]
    big = [
        note("freehand", far, width=50, closed=True, fill=True, ident="f"),
        note("ellipse", [[-1e6, -1e6], [1e6, 1e6]], width=50, fill=True, ident="e"),
        note("text", [[-1e6, 30.0]], text="W" * 2000, font_size=200, ident="t"),
        note("polyline", far, width=50, ident="p"),
    ]
    start = time.perf_counter()
    rgba = render_overlay(big, 640, 480)
    assert time.perf_counter() - start < 3.0
    # The giant ellipse's translucent inside covers the canvas; its outline is far away.
    assert (alpha(rgba) > 0).mean() > 0.5


def test_pathological_documents_stop_early() -> None:
    rng = np.random.default_rng(3)
    zigzag = [[float(x), float(y)] for x, y in np.round(rng.uniform(0, 4096, (10_000, 2)))]
    start = time.perf_counter()
    with pytest.raises(OverlayTooComplex):
        render_overlay([note("freehand", zigzag, width=50)], 4096, 4096)
    assert time.perf_counter() - start < 3.0
    # The same stroke fits the budget on a smaller canvas, where it is shorter.
    start = time.perf_counter()
    render_overlay([note("freehand", zigzag, width=50)], 256, 256)
    assert time.perf_counter() - start < 3.0


def test_a_hundred_labelled_shapes_are_quick() -> None:
    rng = np.random.default_rng(4)
    notes = []
    for i in range(100):
        x, y = (float(v) for v in rng.uniform(0, 400, 2))
        kind = ("line", "rectangle", "ellipse", "angle", "arrow")[i % 5]
        pts = [[x, y], [x + 50, y + 30]] if kind != "angle" else [[x, y], [x + 40, y], [x, y + 30]]
        fill = i % 2 == 0 if kind in ("rectangle", "ellipse") else None
        notes.append(note(kind, pts, ident=f"n{i}", created=i, fill=fill))
    start = time.perf_counter()
    render_png(notes, 512, 512, spacing=Calibration.from_pixel_spacing([0.3, 0.3]))
    assert time.perf_counter() - start < 2.0
