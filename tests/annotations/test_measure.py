from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import annotations.measure as measure_module
from annotations.measure import (
    IMAGER_PIXEL_SPACING,
    PIXEL_SPACING,
    UNCALIBRATED,
    Calibration,
    EmptyRoiError,
    ImageInfo,
    angle_deg,
    ellipse_area,
    length_mm,
    measure,
    polygon_area,
    polyline_length,
    rectangle_area,
    roi_mask,
    roi_stats,
)
from annotations.schema import Annotation, validate_annotation

# PixelSpacing is [row spacing, column spacing] = [dy, dx]: a step along x is 0.25 mm.
CAL = Calibration.from_pixel_spacing([0.5, 0.25])
PX = Calibration()


def annotation(kind: str, points: list[list[float]], **geometry: Any) -> Annotation:
    style: dict[str, Any] = {"color": "#00ff00", "width": 1}
    return validate_annotation(
        {
            "id": "m1",
            "author": "p1",
            "created": 0,
            "updated": 0,
            "kind": kind,
            "style": style,
            "anchor": {
                "study_uid": "1.2",
                "series_uid": "1.2.3",
                "instance_uid": "1.2.3.4",
                "frame": 1,
            },
            "geometry": {"points": points, **geometry},
        }
    )


def test_length_uses_anisotropic_spacing_in_dicom_order() -> None:
    # 12 columns * 0.25 mm = 3 mm across, 8 rows * 0.5 mm = 4 mm down: a 3-4-5 triangle.
    assert length_mm((0, 0), (12, 8), CAL) == 5.0
    assert length_mm((12, 8), (0, 0), CAL) == 5.0
    assert length_mm((0, 0), (12, 8), PX) == math.hypot(12, 8)
    assert polyline_length([(0, 0), (12, 8), (12, 0)], CAL) == 5.0 + 4.0


def test_angles() -> None:
    assert angle_deg((10, 0), (0, 0), (0, 10)) == 90.0
    assert angle_deg((10, 0), (0, 0), (10, 10)) == pytest.approx(45.0, abs=1e-12)
    assert angle_deg((10, 0), (0, 0), (-10, 0)) == 180.0
    assert angle_deg((5, 5), (0, 0), (5, 5)) == 0.0
    # In pixels (2, 0) and (2, 1) are 26.57° apart; at 0.25 x 0.5 mm both arms are 0.5 mm
    # along x, and the second also 0.5 mm along y: 45°.
    assert angle_deg((2, 0), (0, 0), (2, 1)) == pytest.approx(math.degrees(math.atan(0.5)))
    assert angle_deg((2, 0), (0, 0), (2, 1), CAL) == pytest.approx(45.0, abs=1e-12)
    with pytest.raises(ValueError, match="zero length"):
        angle_deg((0, 0), (0, 0), (1, 1))


def test_areas_in_mm2() -> None:
    # 8 columns (2 mm) by 4 rows (2 mm).
    assert rectangle_area((2, 3), (10, 7), CAL) == 4.0
    assert rectangle_area((10, 7), (2, 3), CAL) == 4.0
    assert ellipse_area((2, 3), (10, 7), CAL) == pytest.approx(math.pi)
    # Right triangle with legs 12 px (3 mm) and 8 px (4 mm): 6 mm², either winding.
    assert polygon_area([(0, 0), (12, 0), (0, 8)], CAL) == 6.0
    assert polygon_area([(0, 8), (12, 0), (0, 0)], CAL) == 6.0
    assert polygon_area([(0, 0), (12, 0), (0, 8)], PX) == 48.0


def test_calibration_sources() -> None:
    assert Calibration.from_attributes([0.5, 0.25], [0.2, 0.1]).source == PIXEL_SPACING
    imager = Calibration.from_attributes(None, [0.2, 0.1])
    assert (imager.row_spacing, imager.column_spacing, imager.source) == (
        0.2,
        0.1,
        IMAGER_PIXEL_SPACING,
    )
    assert imager.unit == "mm" and imager.area_unit == "mm2" and imager.calibrated
    none = Calibration.from_attributes()
    assert none.source == UNCALIBRATED and none.unit == "px" and none.area_unit == "px2"
    line = annotation("line", [[0, 0], [10, 0]])
    assert measure(line, ImageInfo(imager)) == {
        "length": 1.0,
        "length_unit": "mm",
        "calibration": "ImagerPixelSpacing",
    }
    assert measure(line, ImageInfo()) == {
        "length": 10.0,
        "length_unit": "px",
        "calibration": "none",
    }


@pytest.mark.parametrize("spacing", [[0, 1], [1, -1], [math.nan, 1], [math.inf, 1], [1], [1, 2, 3]])
def test_bad_spacing_is_refused(spacing: list[float]) -> None:
    with pytest.raises(ValueError):
        Calibration.from_pixel_spacing(spacing)


def test_uncalibrated_means_unit_spacing() -> None:
    with pytest.raises(ValueError):
        Calibration(0.5, 0.5, UNCALIBRATED)
    with pytest.raises(ValueError):
        Calibration(0.5, 0.5, "guess")


def ct_slice() -> np.ndarray[Any, np.dtype[np.int16]]:
    """20 x 30 int16 CT slice, stored 3000 (1976 HU) everywhere except the 2 x 4 block at
    rows 3..4, columns 2..5, which holds stored 1000..1007 (-24..-17 HU)."""
    img = np.full((20, 30), 3000, dtype=np.int16)
    img[3:5, 2:6] = np.arange(1000, 1008, dtype=np.int16).reshape(2, 4)
    return img


def test_rectangle_roi_stats_on_a_ct_slice() -> None:
    # Corners on pixel edges: centres 2.5..5.5 across, 3.5..4.5 down.
    stats = roi_stats(ct_slice(), "rectangle", [(2, 3), (6, 5)], 1.0, -1024.0, modality="CT")
    assert stats.n_pixels == 8
    assert stats.mean == -20.5
    # Sample SD of 0..7: sqrt(42 / 7).
    assert stats.sd == pytest.approx(math.sqrt(6), rel=1e-15)
    assert (stats.min, stats.max, stats.unit) == (-24.0, -17.0, "HU")
    # Corners inside pixels select the same centres.
    same = roi_stats(ct_slice(), "rectangle", [(5.9, 4.9), (2.1, 3.1)], 1.0, -1024.0)
    assert (same.n_pixels, same.mean, same.unit) == (8, -20.5, "")


def test_ellipse_roi_mask_and_stats() -> None:
    # Circle of radius 2.5 px around (2.5, 2.5): centres at offsets (i, j) with
    # i² + j² <= 6.25 from the middle pixel, i.e. the 5 x 5 block minus its corners.
    expected = np.array(
        [
            [0, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    assert (roi_mask((6, 6), "ellipse", [(0, 0), (5, 5)]) == expected).all()
    img = np.zeros((6, 6), dtype=np.uint16)
    img[2, 2] = 21  # only the middle differs
    stats = roi_stats(img, "ellipse", [(0, 0), (5, 5)], 2.0, 10.0, unit="MBq/ml")
    assert stats.n_pixels == 21
    assert stats.mean == 12.0  # (20 * 10 + 52) / 21
    assert (stats.min, stats.max, stats.unit) == (10.0, 52.0, "MBq/ml")
    # Sample SD: one value 40 above 20 others, scaled by the slope: 2 * sqrt(21 * 20 / 21 / 20)
    assert stats.sd == pytest.approx(2.0 * math.sqrt((20 * 1.0**2 + 20.0**2) / 20))


def test_polygon_roi() -> None:
    # Triangle with legs 4.2: centres (c + 0.5, r + 0.5) with c + r + 1 < 4.2, i.e. c + r <= 3.
    mask = roi_mask((6, 6), "freehand", [(0, 0), (4.2, 0), (0, 4.2)])
    assert mask.sum() == 10
    assert all(mask[r, c] == (r + c <= 3) for r in range(6) for c in range(6))
    img = np.arange(36, dtype=np.int16).reshape(6, 6)
    stats = roi_stats(img, "polygon", [(0, 0), (4.2, 0), (0, 4.2)])
    values = [6 * r + c for r in range(6) for c in range(6) if r + c <= 3]
    assert stats.n_pixels == 10 and stats.mean == sum(values) / 10
    assert (stats.min, stats.max) == (0.0, 18.0)


def test_roi_is_clipped_to_the_image() -> None:
    img = ct_slice()
    stats = roi_stats(img, "rectangle", [(-5, -5), (2, 2)], 1, -1024, modality="CT")
    assert stats.n_pixels == 4 and stats.mean == 1976.0 and stats.sd == 0.0
    assert roi_mask(img.shape, "ellipse", [(-100, -100), (100, 100)]).all()
    assert roi_mask(img.shape, "polygon", [(-1, -1), (99, -1), (99, 99), (-1, 99)]).all()


@pytest.mark.parametrize(
    ("kind", "points"),
    [
        ("rectangle", [(40, 40), (50, 50)]),  # outside the image
        ("rectangle", [(0.6, 0.6), (0.9, 0.9)]),  # between pixel centres
        ("rectangle", [(3, 3), (3, 9)]),  # zero width
        ("ellipse", [(3, 3), (9, 3)]),  # zero height
        ("polygon", [(1, 1), (5, 1)]),  # no interior
    ],
)
def test_empty_roi_is_an_error_and_measure_reports_no_stats(
    kind: str, points: list[tuple[float, float]]
) -> None:
    with pytest.raises(EmptyRoiError):
        roi_stats(ct_slice(), kind, points, 1, -1024)
    schema_kind = "freehand" if kind == "polygon" else kind
    extra = {"closed": True} if kind == "polygon" else {}
    ann = annotation(schema_kind, [list(p) for p in points], **extra)
    result = measure(ann, ImageInfo(CAL, ct_slice(), 1, -1024, "CT"))
    assert result["n_pixels"] == 0 and result["unit"] == "HU"
    assert result["mean"] is None and result["sd"] is None
    assert result["min"] is None and result["max"] is None


def test_single_pixel_has_no_sample_sd() -> None:
    stats = roi_stats(ct_slice(), "rectangle", [(2.4, 3.4), (2.6, 3.6)], 1, -1024)
    assert (stats.n_pixels, stats.mean, stats.sd) == (1, -24.0, None)


def test_negative_slope_swaps_min_and_max() -> None:
    stats = roi_stats(ct_slice(), "rectangle", [(2, 3), (6, 5)], -2.0, 0.0)
    assert (stats.min, stats.max, stats.mean) == (-2014.0, -2000.0, -2007.0)
    assert stats.sd == pytest.approx(2 * math.sqrt(6))


def test_bad_pixels_and_rescale_are_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        roi_stats(np.zeros((4, 4, 3)), "rectangle", [(0, 0), (2, 2)])
    with pytest.raises(ValueError, match="2-D"):
        roi_stats(np.zeros((4, 4), dtype=bool), "rectangle", [(0, 0), (2, 2)])
    with pytest.raises(ValueError, match="finite"):
        roi_stats(np.zeros((4, 4)), "rectangle", [(0, 0), (2, 2)], math.nan)
    img = np.zeros((4, 4))
    img[1, 1] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        roi_stats(img, "rectangle", [(0, 0), (2, 2)])
    assert roi_stats(img, "rectangle", [(2, 2), (4, 4)]).n_pixels == 4
    with pytest.raises(ValueError, match="shape_kind"):
        roi_stats(img, "circle", [(0, 0), (2, 2)])
    with pytest.raises(ValueError, match="2 corner points"):
        roi_stats(img, "ellipse", [(0, 0), (2, 2), (3, 3)])


def test_measure_per_kind() -> None:
    img = ct_slice()
    info = ImageInfo(CAL, img, 1.0, -1024.0, "CT")
    assert measure(annotation("arrow", [[0, 0], [12, 8]]), info) == {
        "length": 5.0,
        "length_unit": "mm",
        "calibration": "PixelSpacing",
    }
    assert measure(annotation("polyline", [[0, 0], [12, 8], [12, 0]]), info)["length"] == 9.0
    assert measure(annotation("freehand", [[0, 0], [12, 8], [12, 0]]), info)["length"] == 9.0
    assert measure(annotation("angle", [[2, 0], [0, 0], [2, 1]]), info)["angle_deg"] == (
        pytest.approx(45.0)
    )
    assert measure(annotation("angle", [[0, 0], [0, 0], [2, 1]]), info) == {
        "angle_deg": None,
        "calibration": "PixelSpacing",
    }
    assert measure(annotation("rectangle", [[6, 5], [2, 3]]), info) == {
        "area": 2.0 * 0.25 * 4 * 0.5,
        "area_unit": "mm2",
        "calibration": "PixelSpacing",
        "n_pixels": 8,
        "mean": -20.5,
        "sd": pytest.approx(math.sqrt(6)),
        "min": -24.0,
        "max": -17.0,
        "unit": "HU",
    }
    ellipse = measure(annotation("ellipse", [[2, 3], [10, 7]]), ImageInfo(CAL))
    assert ellipse == {
        "area": pytest.approx(math.pi),
        "area_unit": "mm2",
        "calibration": "PixelSpacing",
    }
    closed = measure(annotation("freehand", [[2, 3], [6, 3], [6, 5], [2, 5]], closed=True), info)
    assert closed["area"] == 1.0 and closed["n_pixels"] == 8 and closed["mean"] == -20.5
    assert measure(annotation("point", [[1, 1]]), info) == {}
    assert measure(annotation("text", [[1, 1]], text="x"), info) == {}


def brute_force_even_odd(
    shape: tuple[int, int], pts: list[tuple[float, float]]
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    rows, cols = shape
    out = np.zeros(shape, dtype=bool)
    for r in range(rows):
        for c in range(cols):
            px, py, inside = c + 0.5, r + 0.5, False
            for i in range(len(pts)):
                (xa, ya), (xb, yb) = pts[i], pts[(i + 1) % len(pts)]
                if (ya <= py) != (yb <= py) and xa + (py - ya) / (yb - ya) * (xb - xa) > px:
                    inside = not inside
            out[r, c] = inside
    return out


# Coordinates on a quarter-pixel grid hit pixel centres and edges exactly.
grid = st.integers(-12, 60).map(lambda v: v / 4)


@given(st.lists(st.tuples(grid, grid), min_size=3, max_size=9))
def test_polygon_mask_matches_the_even_odd_rule(pts: list[tuple[float, float]]) -> None:
    assert (roi_mask((12, 10), "polygon", pts) == brute_force_even_odd((12, 10), pts)).all()


def test_polygon_scan_conversion_in_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    star = [
        (
            16 + (15 if i % 2 else 6) * math.cos(i * math.pi / 7),
            16 + (15 if i % 2 else 6) * math.sin(i * math.pi / 7),
        )
        for i in range(14)
    ]
    whole = roi_mask((32, 32), "polygon", star)
    monkeypatch.setattr(measure_module, "_CROSSING_BATCH", 5)
    assert (roi_mask((32, 32), "polygon", star) == whole).all()
    assert (whole == brute_force_even_odd((32, 32), star)).all()


def test_long_freehand_roi_is_fast() -> None:
    t = np.linspace(0, 2 * np.pi, 10_000, endpoint=False)
    circle = np.stack([256 + 200 * np.cos(t), 256 + 200 * np.sin(t)], axis=1)
    img = np.zeros((512, 512), dtype=np.int16)
    start = time.perf_counter()
    stats = roi_stats(img, "freehand", circle)
    assert time.perf_counter() - start < 1.0
    assert stats.n_pixels == pytest.approx(math.pi * 200**2, rel=0.01)


coord = st.floats(-1e4, 1e4)


@given(coord, coord, coord, coord, st.floats(0.01, 5), st.floats(0.01, 5))
def test_length_is_symmetric(
    x0: float, y0: float, x1: float, y1: float, dy: float, dx: float
) -> None:
    cal = Calibration.from_pixel_spacing([dy, dx])
    assert length_mm((x0, y0), (x1, y1), cal) == length_mm((x1, y1), (x0, y0), cal)
    assert polyline_length([(x0, y0), (x1, y1)], cal) == pytest.approx(
        length_mm((x0, y0), (x1, y1), cal)
    )


@given(
    value=st.integers(-32768, 32767),
    slope=st.sampled_from([1.0, 0.5, 2.0, -1.0]),
    intercept=st.sampled_from([0.0, -1024.0, 7.5]),
    kind=st.sampled_from(["rectangle", "ellipse", "polygon"]),
    corner=st.tuples(st.floats(-5, 15), st.floats(-5, 15)),
    size=st.tuples(st.floats(1.5, 30), st.floats(1.5, 30)),
)
def test_roi_of_a_constant_image_is_that_constant(
    value: int,
    slope: float,
    intercept: float,
    kind: str,
    corner: tuple[float, float],
    size: tuple[float, float],
) -> None:
    img = np.full((16, 12), value, dtype=np.int16)
    (x, y), (w, h) = corner, size
    pts = [(x, y), (x + w, y + h)] if kind != "polygon" else [(x, y), (x + w, y), (x, y + h)]
    try:
        stats = roi_stats(img, kind, pts, slope, intercept)
    except EmptyRoiError:
        assert not roi_mask(img.shape, kind, pts).any()
        return
    expected = value * slope + intercept
    assert stats.mean == stats.min == stats.max == expected
    assert stats.sd is None or stats.sd == 0.0
    assert stats.n_pixels == roi_mask(img.shape, kind, pts).sum()
