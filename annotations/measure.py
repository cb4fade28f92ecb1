"""Measurements from the image, not the screen: lengths, angles, areas and ROI statistics.

Pure numpy maths over image pixel coordinates (the convention of ``annotations.schema``:
``x`` along columns, ``y`` down rows, the centre of pixel (row r, column c) at
``(c + 0.5, r + 0.5)``).

Calibration (PS3.3 §10.7.1.1, value order §10.7.1.3): Pixel Spacing and Imager Pixel
Spacing are ``[row spacing, column spacing]`` = ``[dy, dx]`` in mm, so a step along ``x``
is scaled by the *second* value. Spacing may be anisotropic; every length, area and angle
here is computed in physical space. Imager Pixel Spacing is measured at the detector's
front plane and never corrected for geometric magnification, so results from it are
"mm at the detector"; ``Calibration.source`` says which attribute was used and every
``measure`` result carries it. Without either, results are in pixels (``unit`` "px").

ROI statistics use the stored pixel values with the Modality LUT's linear rescale applied
(``slope * stored + intercept``, PS3.3 §C.11.1). A pixel belongs to the ROI when its
centre lies inside the shape: inside or on the boundary for rectangles and ellipses; by the
even-odd rule with half-open edges for polygons (closed freehand strokes), whose area is the
shoelace area of the outline. The SD is the *sample* SD (``ddof=1``), ``None`` for a single
pixel. An ROI containing no pixel centre raises ``EmptyRoiError`` from ``roi_stats``;
``measure`` reports it as ``n_pixels`` 0 with ``None`` statistics, so no result is ever NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from annotations.schema import Annotation, Geometry, Kind

__all__ = [
    "IMAGER_PIXEL_SPACING",
    "PIXEL_SPACING",
    "UNCALIBRATED",
    "Calibration",
    "EmptyRoiError",
    "ImageInfo",
    "RoiStats",
    "angle_deg",
    "ellipse_area",
    "length_mm",
    "measure",
    "polygon_area",
    "polyline_length",
    "rectangle_area",
    "roi_mask",
    "roi_stats",
]

PIXEL_SPACING: Final = "PixelSpacing"
IMAGER_PIXEL_SPACING: Final = "ImagerPixelSpacing"
UNCALIBRATED: Final = "none"

#: Polygon scan conversion handles at most this many edge/row crossings per numpy batch.
_CROSSING_BATCH: Final = 1 << 20

PointLike = Sequence[float]
FloatArray = npt.NDArray[np.float64]
Measurement = dict[str, float | int | str | None]


class EmptyRoiError(ValueError):
    """No pixel centre of the image lies inside the ROI."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Physical size of a pixel step: ``row_spacing`` (dy, between row centres) and
    ``column_spacing`` (dx, between column centres), in mm, or 1.0 each when ``source``
    is ``UNCALIBRATED`` and results are in pixels."""

    row_spacing: float = 1.0
    column_spacing: float = 1.0
    source: str = UNCALIBRATED

    def __post_init__(self) -> None:
        for name in ("row_spacing", "column_spacing"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(name + ": must be a finite number > 0")
        if self.source not in (PIXEL_SPACING, IMAGER_PIXEL_SPACING, UNCALIBRATED):
            raise ValueError("source: unknown calibration source")
        if self.source == UNCALIBRATED and (self.row_spacing, self.column_spacing) != (1, 1):
            raise ValueError("an uncalibrated image has unit spacing")

    @classmethod
    def from_pixel_spacing(cls, value: Sequence[float]) -> Calibration:
        """From Pixel Spacing (0028,0030), ``[row spacing, column spacing]``."""
        dy, dx = _spacing_pair(value)
        return cls(dy, dx, PIXEL_SPACING)

    @classmethod
    def from_imager_pixel_spacing(cls, value: Sequence[float]) -> Calibration:
        """From Imager Pixel Spacing (0018,1164): mm at the detector, not at the patient."""
        dy, dx = _spacing_pair(value)
        return cls(dy, dx, IMAGER_PIXEL_SPACING)

    @classmethod
    def from_attributes(
        cls,
        pixel_spacing: Sequence[float] | None = None,
        imager_pixel_spacing: Sequence[float] | None = None,
    ) -> Calibration:
        """Pixel Spacing when present (it may be magnification-corrected, §10.7.1.1), else
        Imager Pixel Spacing, else uncalibrated."""
        if pixel_spacing is not None:
            return cls.from_pixel_spacing(pixel_spacing)
        if imager_pixel_spacing is not None:
            return cls.from_imager_pixel_spacing(imager_pixel_spacing)
        return cls()

    @property
    def calibrated(self) -> bool:
        return self.source != UNCALIBRATED

    @property
    def unit(self) -> str:
        """Length unit of results: "mm" or "px"."""
        return "mm" if self.calibrated else "px"

    @property
    def area_unit(self) -> str:
        """Area unit of results (UCUM spelling): "mm2" or "px2"."""
        return self.unit + "2"


def _spacing_pair(value: Sequence[float]) -> tuple[float, float]:
    if len(value) != 2:
        raise ValueError("pixel spacing: expected [row spacing, column spacing]")
    return float(value[0]), float(value[1])


@dataclass(frozen=True, slots=True)
class RoiStats:
    """Statistics of the rescaled values of the pixels inside an ROI. ``sd`` is the sample
    SD (ddof=1), ``None`` when ``n_pixels`` is 1."""

    mean: float
    sd: float | None
    min: float
    max: float
    n_pixels: int
    unit: str


@dataclass(frozen=True, slots=True, eq=False)
class ImageInfo:
    """What ``measure`` needs to know of the annotated frame. ``pixels`` is that frame's
    stored values (rows x columns), or ``None`` to skip ROI statistics."""

    calibration: Calibration = Calibration()
    pixels: npt.NDArray[Any] | None = None
    slope: float = 1.0
    intercept: float = 0.0
    modality: str | None = None
    unit: str | None = None


def _xy(p: PointLike) -> tuple[float, float]:
    if len(p) != 2:
        raise ValueError("point: expected [x, y]")
    return float(p[0]), float(p[1])


def _array(points: Sequence[PointLike] | FloatArray, at_least: int) -> FloatArray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < at_least:
        raise ValueError("points: expected at least " + str(at_least) + " [x, y] pairs")
    if not np.isfinite(arr).all():
        raise ValueError("points: not all finite")
    return arr


def length_mm(p0: PointLike, p1: PointLike, cal: Calibration) -> float:
    """Distance between two points, in ``cal.unit`` (mm, or pixels when uncalibrated)."""
    x0, y0 = _xy(p0)
    x1, y1 = _xy(p1)
    return math.hypot((x1 - x0) * cal.column_spacing, (y1 - y0) * cal.row_spacing)


def polyline_length(points: Sequence[PointLike] | FloatArray, cal: Calibration) -> float:
    """Length of an open polyline, in ``cal.unit``."""
    d = np.diff(_array(points, 2), axis=0)
    return float(np.hypot(d[:, 0] * cal.column_spacing, d[:, 1] * cal.row_spacing).sum())


def angle_deg(
    a: PointLike, vertex: PointLike, b: PointLike, cal: Calibration | None = None
) -> float:
    """The angle a-vertex-b in degrees, 0..180, measured in physical space (anisotropic
    spacing changes angles). Raises ``ValueError`` if an arm has zero length."""
    sx, sy = (cal.column_spacing, cal.row_spacing) if cal is not None else (1.0, 1.0)
    vx, vy = _xy(vertex)
    ax, ay = _xy(a)
    bx, by = _xy(b)
    ux, uy = (ax - vx) * sx, (ay - vy) * sy
    wx, wy = (bx - vx) * sx, (by - vy) * sy
    if (ux == 0 and uy == 0) or (wx == 0 and wy == 0):
        raise ValueError("angle: an arm has zero length")
    return math.degrees(math.atan2(abs(ux * wy - uy * wx), ux * wx + uy * wy))


def _box(p0: PointLike, p1: PointLike) -> tuple[float, float, float, float]:
    x0, y0 = _xy(p0)
    x1, y1 = _xy(p1)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def rectangle_area(p0: PointLike, p1: PointLike, cal: Calibration) -> float:
    """Area of the axis-aligned rectangle with opposite corners p0, p1, in ``cal.area_unit``."""
    xmin, ymin, xmax, ymax = _box(p0, p1)
    return (xmax - xmin) * cal.column_spacing * (ymax - ymin) * cal.row_spacing


def ellipse_area(p0: PointLike, p1: PointLike, cal: Calibration) -> float:
    """Area of the ellipse inscribed in the rectangle p0, p1, in ``cal.area_unit``."""
    return math.pi / 4 * rectangle_area(p0, p1, cal)


def polygon_area(points: Sequence[PointLike] | FloatArray, cal: Calibration) -> float:
    """Shoelace area of the closed outline through ``points``, in ``cal.area_unit``. For a
    self-intersecting outline this is the absolute net signed area."""
    arr = _array(points, 1)
    x, y = arr[:, 0], arr[:, 1]
    twice = np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))
    return abs(float(twice)) / 2 * cal.column_spacing * cal.row_spacing


def _index_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Indices i in [0, size) whose centre i + 0.5 lies in [lo, hi]: half-open [start, stop)."""
    start = max(math.ceil(lo - 0.5), 0)
    stop = min(math.floor(hi - 0.5) + 1, size)
    return start, max(stop, start)


_Block = tuple[slice, slice, npt.NDArray[np.bool_] | None]


def _block_mask(shape: tuple[int, int], kind: str, arr: FloatArray) -> _Block:
    """The ROI as a block of the image plus a mask of that block (``None``: all of it)."""
    rows, cols = shape
    if kind not in ("rectangle", "ellipse", "freehand", "polygon"):
        raise ValueError("shape_kind: expected rectangle, ellipse, freehand or polygon")
    if kind in ("rectangle", "ellipse") and arr.shape[0] != 2:
        raise ValueError("points: a " + kind + " takes exactly 2 corner points")
    xmin, ymin = arr.min(axis=0)
    xmax, ymax = arr.max(axis=0)
    r0, r1 = _index_range(float(ymin), float(ymax), rows)
    c0, c1 = _index_range(float(xmin), float(xmax), cols)
    block = (slice(r0, r1), slice(c0, c1))
    if r0 == r1 or c0 == c1:
        return block[0], block[1], np.zeros((r1 - r0, c1 - c0), dtype=np.bool_)
    if kind == "rectangle":
        return block[0], block[1], None
    if kind == "ellipse":
        a, b = (xmax - xmin) / 2, (ymax - ymin) / 2
        if a == 0 or b == 0:
            return block[0], block[1], np.zeros((r1 - r0, c1 - c0), dtype=np.bool_)
        u = (np.arange(c0, c1) + 0.5 - (xmin + a)) / a
        v = (np.arange(r0, r1) + 0.5 - (ymin + b)) / b
        return block[0], block[1], (v * v)[:, None] + (u * u)[None, :] <= 1.0
    return block[0], block[1], _polygon_mask(arr, r0, r1, c0, c1)


def _polygon_mask(arr: FloatArray, r0: int, r1: int, c0: int, c1: int) -> npt.NDArray[np.bool_]:
    """Even-odd scan conversion of the closed outline over rows [r0, r1) x cols [c0, c1).

    Each edge crosses the centre lines of a contiguous run of rows (half-open in y, so a
    vertex on a centre line counts once). A crossing at x toggles every pixel in its row
    whose centre lies left of x; the parity of toggles, accumulated from the right, is the
    mask. Work is proportional to the crossings plus the block's pixels.
    """
    h, w = r1 - r0, c1 - c0
    xa, ya = arr[:, 0], arr[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    ylo, yhi = np.minimum(ya, yb), np.maximum(ya, yb)
    start = np.clip(np.ceil(ylo - 0.5), r0, r1).astype(np.int64)
    stop = np.clip(np.ceil(yhi - 0.5), r0, r1).astype(np.int64)
    counts = np.maximum(stop - start, 0)
    parity = np.zeros(h * (w + 1), dtype=np.uint8)
    ends = np.cumsum(counts)
    edge_lo = 0
    while edge_lo < len(counts):
        done = int(ends[edge_lo - 1]) if edge_lo else 0
        edge_hi = int(np.searchsorted(ends, done + _CROSSING_BATCH, side="right"))
        edge_hi = max(edge_hi, edge_lo + 1)
        n = counts[edge_lo:edge_hi]
        total = int(n.sum())
        if total:
            edge = np.repeat(np.arange(edge_lo, edge_hi), n)
            first = np.repeat(np.cumsum(n) - n, n)
            row = start[edge] + (np.arange(total) - first)
            t = (row + 0.5 - ya[edge]) / (yb[edge] - ya[edge])
            x = xa[edge] + t * (xb[edge] - xa[edge])
            k = np.clip(np.ceil(x - 0.5), c0, c1).astype(np.int64) - c0
            np.bitwise_xor.at(parity, (row - r0) * (w + 1) + k, 1)
        edge_lo = edge_hi
    # inside[c] = xor of toggles at k > c, i.e. crossings right of the centre of column c
    grid = parity.reshape(h, w + 1)[:, ::-1]
    return np.bitwise_xor.accumulate(grid, axis=1)[:, ::-1][:, 1:].astype(np.bool_)


def _points_of(geometry: Geometry | Sequence[PointLike] | FloatArray) -> FloatArray:
    return _array(geometry.points if isinstance(geometry, Geometry) else geometry, 1)


def roi_mask(
    shape: tuple[int, int],
    shape_kind: str,
    geometry: Geometry | Sequence[PointLike] | FloatArray,
) -> npt.NDArray[np.bool_]:
    """Boolean (rows x columns) mask of the pixels whose centres lie inside the shape."""
    rows, cols = shape
    out = np.zeros((rows, cols), dtype=np.bool_)
    rs, cs, mask = _block_mask((rows, cols), shape_kind, _points_of(geometry))
    out[rs, cs] = True if mask is None else mask
    return out


def roi_stats(
    pixels: npt.NDArray[Any],
    shape_kind: str,
    geometry: Geometry | Sequence[PointLike] | FloatArray,
    slope: float = 1.0,
    intercept: float = 0.0,
    *,
    modality: str | None = None,
    unit: str | None = None,
) -> RoiStats:
    """Statistics of ``slope * stored + intercept`` over the pixels of a 2-D frame whose
    centres lie inside the rectangle, ellipse or polygon (``"freehand"``/``"polygon"``),
    clipped to the image. ``unit`` wins; else "HU" for modality CT; else "".

    Raises ``EmptyRoiError`` when no pixel centre is inside, ``ValueError`` for a frame
    that is not 2-D numeric, a non-finite rescale, or non-finite values inside the ROI.
    """
    if pixels.ndim != 2 or pixels.dtype.kind not in "iuf":
        raise ValueError("pixels: expected a 2-D array of numbers (one frame, one sample)")
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise ValueError("rescale slope and intercept must be finite")
    rows, cols = pixels.shape
    rs, cs, mask = _block_mask((rows, cols), shape_kind, _points_of(geometry))
    block = pixels[rs, cs]
    values = block.ravel() if mask is None else block[mask]
    n = int(values.size)
    if n == 0:
        raise EmptyRoiError("the ROI contains no pixel centre of the image")
    lo, hi = values.min(), values.max()
    if values.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("pixels: non-finite values inside the ROI")
    # Statistics of the stored values (exact for integers), then the linear rescale.
    mean = float(values.mean(dtype=np.float64)) * slope + intercept
    sd = abs(slope) * float(values.std(dtype=np.float64, ddof=1)) if n > 1 else None
    ends = (float(lo) * slope + intercept, float(hi) * slope + intercept)
    return RoiStats(mean, sd, min(ends), max(ends), n, _value_unit(modality, unit))


def _value_unit(modality: str | None, unit: str | None) -> str:
    if unit is not None:
        return unit
    return "HU" if modality == "CT" else ""


def measure(annotation: Annotation, image: ImageInfo) -> Measurement:
    """The measurement fields of one validated annotation on its frame.

    - ``line``, ``arrow``, ``polyline``, open ``freehand``: ``length``, ``length_unit``
    - ``angle``: ``angle_deg`` (``None`` when an arm has zero length)
    - ``rectangle``, ``ellipse``, closed ``freehand``: ``area``, ``area_unit``; with
      ``image.pixels`` also ``n_pixels``, ``mean``, ``sd``, ``min``, ``max``, ``unit``
      (statistics ``None`` for an empty ROI)
    - ``point``, ``text``: nothing (an empty dict)

    Every non-empty result has ``calibration``, the ``Calibration.source`` used. Keys are
    fixed per kind; undefined values are ``None``, never NaN.
    """
    cal = image.calibration
    kind = annotation.kind
    pts = annotation.geometry.points
    out: Measurement = {}
    if kind in (Kind.LINE, Kind.ARROW):
        out["length"] = length_mm(pts[0], pts[1], cal)
        out["length_unit"] = cal.unit
    elif kind is Kind.POLYLINE or (kind is Kind.FREEHAND and not annotation.geometry.closed):
        out["length"] = polyline_length(pts, cal)
        out["length_unit"] = cal.unit
    elif kind is Kind.ANGLE:
        try:
            out["angle_deg"] = angle_deg(pts[0], pts[1], pts[2], cal)
        except ValueError:
            out["angle_deg"] = None
    elif kind in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.FREEHAND):
        if kind is Kind.RECTANGLE:
            out["area"] = rectangle_area(pts[0], pts[1], cal)
        elif kind is Kind.ELLIPSE:
            out["area"] = ellipse_area(pts[0], pts[1], cal)
        else:
            out["area"] = polygon_area(pts, cal)
        out["area_unit"] = cal.area_unit
        if image.pixels is not None:
            out.update(_stats_fields(annotation, image))
    else:
        return out
    out["calibration"] = cal.source
    return out


def _stats_fields(annotation: Annotation, image: ImageInfo) -> Measurement:
    assert image.pixels is not None
    try:
        stats = roi_stats(
            image.pixels,
            annotation.kind.value,
            annotation.geometry,
            image.slope,
            image.intercept,
            modality=image.modality,
            unit=image.unit,
        )
    except EmptyRoiError:
        unit = _value_unit(image.modality, image.unit)
        return {"n_pixels": 0, "mean": None, "sd": None, "min": None, "max": None, "unit": unit}
    return {
        "n_pixels": stats.n_pixels,
        "mean": stats.mean,
        "sd": stats.sd,
        "min": stats.min,
        "max": stats.max,
        "unit": stats.unit,
    }
