"""One image's annotations drawn with OpenCV: an RGBA overlay at the image's pixel size.

``render_overlay`` draws every annotation of one image (``annotations/SCHEMA.md``) in its
own ``style.color``, oldest first (``created``, then ``id``, as the browser draws them):
arrows with a filled head, lines, polylines, freehand strokes (a closed one is an outline,
filled when ``style.fill``), rectangles and ellipses (filled when ``style.fill``), angles
(both arms, an arc at the vertex and the angle in degrees), point markers and text labels.
Each measurable shape is labelled with its measurement from ``annotations.measure``:
length (line, arrow, polyline, open freehand), area (rectangle, ellipse, closed freehand)
or angle; in mm with a calibration, in px without, and marked "(detector)" when it comes
from Imager Pixel Spacing. Region statistics (mean, SD, min, max, pixel count) are added
only when the frame's pixel values are given. ``encode_png`` and ``render_png`` give PNG.

Geometry. Points are image pixel coordinates with pixel centres at ``(c + 0.5, r + 0.5)``.
cv2 puts pixel centres at integers, so every point is moved by -0.5 and passed in fixed
point with ``shift`` = 4 (1/16 pixel); strokes are anti-aliased (``LINE_AA``).

Stroke widths. ``style.width`` and ``style.fontSize`` are CSS pixels: screen pixels at
the zoom the author drew at, which the overlay cannot know. The overlay is drawn as the
image would look fitted into a 1024 CSS-pixel viewer and never magnified: one CSS pixel
is ``max(1, max(width, height) / 1024)`` image pixels (``default_px_per_css``), so
strokes keep their on-screen weight on a large image and are exact at 1:1 on a small one
(the browser client's demo image is 512 pixels: 1 CSS px = 1 image px). cv2 draws a
thickness-t anti-aliased stroke about 2*floor(t/2) + 1.4 pixels wide, so widths are
rounded to the nearest of 1.4, 3.4, 5.4, ... pixels. Labels are 12 CSS px, ``text``
annotations ``style.fontSize`` (default 14; ``style.width`` is not used), anchored as
canvas ``fillText`` draws: the point is the left end of the first line's baseline, and
each further line (LF, CRLF or CR) is 1.25 em below.

Colours and fills. The overlay is drawn premultiplied (cv2's anti-aliasing blends all four
channels, which is exactly "over" on premultiplied pixels) and returned as straight RGBA.
Fills are drawn on their own layer in the shape's colour at ``FILL_ALPHA`` opacity,
beneath every outline and label (a later fill covers an earlier one where they overlap).
Text is cv2's Hershey simplex font (ASCII: other characters become ``?``, except ``°``,
``²`` and ``³``, drawn as superscripts) with a black halo, so it reads on any image.

Bounds. Width and height are 1..``MAX_SIDE``. Strokes and fill outlines are clipped to
the canvas (plus a margin) in numpy before cv2 sees them, dense strokes drop points closer
than an eighth of the stroke width, and text is drawn only where it is visible, so a shape
far outside the canvas costs nothing. Every drawing step spends from a budget of
``WORK_LIMIT`` units (0.1 to 0.2 µs each: one unit per pixel of stroke length, more for
thick strokes, filled rows and glyph pixels); a stroke that would overrun it is drawn
1 pixel thick, and a render that overruns it anyway raises ``OverlayTooComplex`` (a few
seconds at most). The rest is O(width * height) numpy and cv2 over the canvas, never
per-pixel Python.

Pure: no I/O, no ``consultd``, no shared state; safe to call from worker threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

from annotations.measure import IMAGER_PIXEL_SPACING, Calibration, ImageInfo, measure
from annotations.schema import Annotation, Kind, in_drawing_order

__all__ = [
    "FILL_ALPHA",
    "MAX_SIDE",
    "REFERENCE_VIEW_CSS_PX",
    "WORK_LIMIT",
    "OverlayTooComplex",
    "default_px_per_css",
    "encode_png",
    "measurement_label",
    "render_overlay",
    "render_png",
]

#: Largest overlay width or height, in pixels.
MAX_SIDE: Final = 8192
#: Opacity of a filled rectangle, ellipse or closed freehand region.
FILL_ALPHA: Final = 0.25
#: The overlay is drawn as the image looks fitted into a viewer this many CSS px wide.
REFERENCE_VIEW_CSS_PX: Final = 1024
#: Work units (0.1 to 0.2 µs each) one render may spend on drawing.
WORK_LIMIT: Final = 1 << 24
#: Size of the measurement labels, CSS px (as the browser client draws them).
LABEL_FONT_CSS_PX: Final = 12.0
#: Size of a ``text`` annotation without ``style.fontSize``, CSS px.
TEXT_FONT_CSS_PX: Final = 14.0

FloatArray = npt.NDArray[np.float64]
Image = npt.NDArray[np.uint8]
#: A colour in cv2's channel order, premultiplied-ready: (blue, green, red, alpha).
BGRA = tuple[int, int, int, int]
Runs = list[tuple[str, bool]]

_SHIFT: Final = 4
_ONE: Final = 1 << _SHIFT
#: Bound on fixed-point coordinates (int32), in pixels.
_FIXED_LIMIT: Final = float(1 << 26)
_AA: Final = cv2.LINE_AA
_FONT: Final = cv2.FONT_HERSHEY_SIMPLEX
#: Hershey simplex at scale 1: cap height and descender depth, in pixels.
_CAP: Final = 21.0
_DESCENT: Final = 7.0
#: Cap height of a font, as a fraction of its CSS size (typical sans-serif).
_CAP_PER_EM: Final = 0.72
_LINE_SPACING: Final = 1.25
_SUPERSCRIPTS: Final = {"°": "o", "²": "2", "³": "3"}
_SUP_SCALE: Final = 0.6
_BLACK: Final = (0, 0, 0, 255)
_CHUNK_PIXELS: Final = 1 << 20
_PNG_FILTER: Final = getattr(cv2, "IMWRITE_PNG_FILTER", None)


class OverlayTooComplex(ValueError):
    """Drawing these annotations at this size would exceed ``WORK_LIMIT``."""


def default_px_per_css(width: int, height: int) -> float:
    """Image pixels per CSS pixel for an overlay of this size (module docstring)."""
    return max(1.0, max(width, height) / REFERENCE_VIEW_CSS_PX)


def _check_side(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(name + ": not an integer")
    side = int(value)
    if not 1 <= side <= MAX_SIDE:
        raise ValueError(name + ": must be 1.." + str(MAX_SIDE))
    return side


def _bgra(color: str) -> BGRA:
    return int(color[5:7], 16), int(color[3:5], 16), int(color[1:3], 16), 255


def _fixed(points: FloatArray) -> npt.NDArray[np.int32]:
    """Image coordinates (pixel centres at +0.5) -> cv2 fixed point (centres at integers),
    as the (n, 1, 2) int32 array cv2 takes."""
    shifted = np.clip(points - 0.5, -_FIXED_LIMIT, _FIXED_LIMIT) * _ONE
    return np.rint(shifted).astype(np.int32).reshape(-1, 1, 2)


def _fixed_point(x: float, y: float) -> tuple[int, int]:
    p = _fixed(np.array([[x, y]], dtype=np.float64))
    return int(p[0, 0, 0]), int(p[0, 0, 1])


def _thickness(width_px: float) -> int:
    """The cv2 thickness whose anti-aliased stroke is closest to ``width_px`` wide.

    cv2 draws thickness 1 about 1.4 px wide and thickness t > 1 about 2*floor(t/2) + 1.4
    (3 looks like 4), so only 1, 2, 4, 6, ... are worth choosing.
    """
    if width_px < 2.4:
        return 1
    return 2 * max(1, round((width_px - 1.4) / 2))


def _decimate(points: FloatArray, step: float) -> FloatArray:
    """Keep the first point of every ``step`` of arc length, and the last point: the kept
    polyline stays within ``step`` of the original."""
    if len(points) <= 2:
        return points
    seg = np.hypot(*np.diff(points, axis=0).T)
    bucket = np.floor(np.concatenate(([0.0], np.cumsum(seg))) / step)
    keep = np.flatnonzero(np.diff(bucket, prepend=-1.0) > 0)
    if keep[-1] != len(points) - 1:
        keep = np.append(keep, len(points) - 1)
    return points[keep]


def _clip_polyline(
    points: FloatArray, x0: float, y0: float, x1: float, y1: float
) -> tuple[list[FloatArray], float]:
    """The parts of an open polyline inside the box (Liang-Barsky on every segment at once)
    and their total length. Runs of segments wholly inside stay one polyline."""
    a, b = points[:-1], points[1:]
    d = b - a
    lo, hi = points.min(axis=0), points.max(axis=0)
    if lo[0] >= x0 and lo[1] >= y0 and hi[0] <= x1 and hi[1] <= y1:
        return [points], float(np.hypot(d[:, 0], d[:, 1]).sum())
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    keep = np.ones(len(a), dtype=np.bool_)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, low, high in ((0, x0, x1), (1, y0, y1)):
            for p, q in ((-d[:, k], a[:, k] - low), (d[:, k], high - a[:, k])):
                keep &= (p != 0) | (q >= 0)
                r = q / p
                t0 = np.where(p < 0, np.maximum(t0, r), t0)
                t1 = np.where(p > 0, np.minimum(t1, r), t1)
    keep &= t0 <= t1
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return [], 0.0
    whole = (t0[idx] == 0) & (t1[idx] == 1)
    ca = a[idx] + t0[idx, None] * d[idx]
    cb = a[idx] + t1[idx, None] * d[idx]
    length = float(np.hypot(*(cb - ca).T).sum())
    # A segment continues the previous piece when both are whole and consecutive.
    joins = np.zeros(len(idx), dtype=np.bool_)
    joins[1:] = whole[1:] & whole[:-1] & (np.diff(idx) == 1)
    pieces: list[FloatArray] = []
    starts = np.flatnonzero(~joins)
    ends = np.append(starts[1:], len(idx))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if whole[s]:
            pieces.append(points[idx[s] : idx[e - 1] + 2])
        else:
            pieces.append(np.array([ca[s], cb[s]]))
    return pieces, length


def _clip_polygon(points: FloatArray, x0: float, y0: float, x1: float, y1: float) -> FloatArray:
    """Sutherland-Hodgman against the box, vectorised per side. Inside the box the
    even-odd interior of the clipped outline is that of the original."""
    p = points
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if len(p) == 0:
            break
        q = np.roll(p, -1, axis=0)
        p_in = p[:, axis] >= bound if keep_above else p[:, axis] <= bound
        q_in = np.roll(p_in, -1)
        with np.errstate(divide="ignore", invalid="ignore"):  # unused where parallel
            t = (bound - p[:, axis]) / (q[:, axis] - p[:, axis])
            cut = p + t[:, None] * (q - p)
        cut[:, axis] = bound
        # Per edge p -> q: in-in emits q; in-out the cut; out-in the cut then q; out-out none.
        out = np.stack([np.where((p_in & q_in)[:, None], q, cut), q], axis=1)
        emit = np.stack([p_in | q_in, ~p_in & q_in], axis=1)
        p = out[emit]
    return p


def _ascii_runs(text: str) -> Runs:
    """Split a line into (text, superscript) runs of characters the Hershey font has."""
    runs: Runs = []
    for ch in text:
        sup = ch in _SUPERSCRIPTS
        if sup:
            ch = _SUPERSCRIPTS[ch]
        elif ch == "\t":
            ch = "    "
        elif not " " <= ch <= "~":
            ch = "?"
        if runs and runs[-1][1] == sup:
            runs[-1] = (runs[-1][0] + ch, sup)
        else:
            runs.append((ch, sup))
    return runs


def _num(value: float) -> str:
    return format(value, ".1f") if abs(value) >= 10 else format(value, ".2f")


@dataclass(frozen=True, slots=True)
class _Font:
    scale: float  # cv2 fontScale
    thickness: int
    halo: int  # radius of the black halo, pixels

    @classmethod
    def of(cls, css_px: float, px_per_css: float) -> _Font:
        size = css_px * px_per_css
        return cls(size * _CAP_PER_EM / _CAP, max(1, round(size / 14)), max(1, round(size / 16)))

    @property
    def cap(self) -> float:
        return _CAP * self.scale

    @property
    def descent(self) -> float:
        return _DESCENT * self.scale

    @property
    def line_height(self) -> float:
        return self.cap / _CAP_PER_EM * _LINE_SPACING

    def run_scale(self, sup: bool) -> float:
        return self.scale * _SUP_SCALE if sup else self.scale


class _Canvas:
    """The premultiplied BGRA layers of one render and its work budget."""

    def __init__(self, width: int, height: int, scale: float, info: ImageInfo) -> None:
        self.width = width
        self.height = height
        self.scale = scale  # image px per CSS px
        self.info = info
        self.work = 0.0
        #: Outlines and labels.
        self.strokes: Image = np.zeros((height, width, 4), dtype=np.uint8)
        #: Fills at full opacity; allocated by the first fill.
        self.fills: Image | None = None
        self.label_font = _Font.of(LABEL_FONT_CSS_PX, scale)
        self._advances: dict[tuple[str, float, int], float] = {}

    def affordable(self, units: float) -> bool:
        return self.work + units <= WORK_LIMIT

    def spend(self, units: float) -> None:
        self.work += units
        if self.work > WORK_LIMIT:
            raise OverlayTooComplex(
                "the annotations are too complex to draw at "
                + str(self.width)
                + "x"
                + str(self.height)
            )

    def rows_spanned(self, polygon: FloatArray) -> float:
        """Edge/row crossings of a closed outline within the canvas: the cost of a fill."""
        y = np.clip(polygon[:, 1], 0, self.height)
        return float(np.abs(np.diff(y, append=y[:1])).sum())

    # -- primitives -----------------------------------------------------------------------

    def stroke(self, points: FloatArray, color: BGRA, width_px: float, closed: bool) -> None:
        points = _decimate(points, max(0.25, width_px / 8))
        if closed and len(points) > 2:
            points = np.vstack([points, points[:1]])
        t = _thickness(width_px)
        m = t + 2.0  # a cut end's round cap stays outside the canvas
        pieces, length = _clip_polyline(points, -m, -m, self.width + m, self.height + m)
        if not pieces:
            return
        thick = length + (length * t + sum(len(p) for p in pieces) * t * t) / 20
        if t > 1 and not self.affordable(thick):
            t = 1
        self.spend(thick if t > 1 else length + 1)
        cv2.polylines(self.strokes, [_fixed(p) for p in pieces], False, color, t, _AA, _SHIFT)

    def fill(self, outline: FloatArray, color: BGRA) -> None:
        # No anti-aliasing needed: the outline is always stroked over the fill's edge.
        clipped = _clip_polygon(outline, -2, -2, self.width + 2, self.height + 2)
        if len(clipped) < 3:
            return
        lo, hi = clipped.min(axis=0), clipped.max(axis=0)
        self.spend(3 * self.rows_spanned(clipped) + float(np.prod(hi - lo)) / 50)
        if self.fills is None:
            self.fills = np.zeros_like(self.strokes)
        cv2.fillPoly(self.fills, [_fixed(clipped)], color, cv2.LINE_8, _SHIFT)

    def disc(self, x: float, y: float, radius: float, color: BGRA) -> None:
        if not self.visible(np.array([[x, y]]), radius + 1):
            return
        self.spend(10 + radius * radius / 5)
        r = max(1, round(radius * _ONE))
        cv2.circle(self.strokes, _fixed_point(x, y), r, color, -1, _AA, _SHIFT)

    def triangle(self, points: FloatArray, color: BGRA) -> None:
        if not self.visible(points, 1):
            return
        lo, hi = points.min(axis=0), points.max(axis=0)
        self.spend(10 + float(np.prod(hi - lo)) / 20)
        cv2.fillConvexPoly(self.strokes, _fixed(points), color, _AA, _SHIFT)

    def arc(
        self, x: float, y: float, radius: float, start: float, sweep: float, color: BGRA
    ) -> None:
        if not self.visible(np.array([[x, y]]), radius + 1):
            return
        self.spend(10 + radius * 4)
        r = max(1, round(radius * _ONE))
        centre = _fixed_point(x, y)
        cv2.ellipse(self.strokes, centre, (r, r), 0.0, start, start + sweep, color, 1, _AA, _SHIFT)

    def visible(self, points: FloatArray, margin: float = 0.0) -> bool:
        lo = points.min(axis=0) - margin
        hi = points.max(axis=0) + margin
        return bool(lo[0] < self.width and lo[1] < self.height and hi[0] > 0 and hi[1] > 0)

    # -- text -----------------------------------------------------------------------------

    def _advances_of(self, text: str, scale: float, thickness: int) -> FloatArray:
        """Advance of each character (Hershey glyphs do not kern), cached per glyph: cv2
        measures a whole string glyph by glyph, slowly for long strings in large sizes."""
        out = np.empty(len(text))
        for i, ch in enumerate(text):
            key = (ch, scale, thickness)
            adv = self._advances.get(key)
            if adv is None:
                one = cv2.getTextSize(ch, _FONT, scale, thickness)[0][0]
                two = cv2.getTextSize(ch + ch, _FONT, scale, thickness)[0][0]
                adv = self._advances[key] = float(two - one)
            out[i] = adv
        return out

    def text_width(self, runs: Runs, font: _Font) -> float:
        return sum(
            float(self._advances_of(text, font.run_scale(sup), font.thickness).sum())
            for text, sup in runs
        )

    def _paint(self, y0: int, x0: int, coverage: npt.NDArray[np.uint8], color: BGRA) -> None:
        """``color`` over the canvas through a coverage mask (0..255) placed at (y0, x0)."""
        h, w = coverage.shape
        region = self.strokes[y0 : y0 + h, x0 : x0 + w]
        kept = cv2.multiply(region, cv2.merge([255 - coverage] * 4), scale=1 / 255)
        ink = cv2.merge([cv2.convertScaleAbs(coverage, alpha=v / 255) for v in color])
        region[...] = cv2.add(kept, ink)

    def _halo(self, mask: npt.NDArray[np.uint8], radius: int) -> npt.NDArray[np.uint8]:
        """The mask grown by ``radius`` pixels (a distance transform past 2 px: its cost
        does not grow with the radius)."""
        if radius <= 2:
            size = 2 * radius + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            grown: npt.NDArray[np.uint8] = np.asarray(cv2.dilate(mask, kernel), dtype=np.uint8)
            return grown
        distance = cv2.distanceTransform((mask < 128).astype(np.uint8), cv2.DIST_L2, 3)
        fringe = np.clip((radius + 0.5 - distance) * 255, 0, 255).astype(np.uint8)
        out: npt.NDArray[np.uint8] = np.maximum(fringe, mask)
        return out

    def _text_line(
        self, runs: Runs, left: float, baseline: float, color: BGRA, font: _Font
    ) -> None:
        """One line, drawn into a mask of its visible part, then its halo and itself
        painted (cv2 text straight onto a large image is slow: its cost grows with the
        image)."""
        pad = font.halo + font.thickness + 0.4 * font.cap + 2
        top = max(0, math.floor(baseline - font.cap - pad))
        bottom = min(self.height, math.ceil(baseline + font.descent + pad))
        x_lo = max(0, math.floor(left - pad))
        x_hi = min(self.width, math.ceil(left + self.text_width(runs, font) + pad))
        if top >= bottom or x_lo >= x_hi:
            return
        mask = np.zeros((bottom - top, x_hi - x_lo), dtype=np.uint8)
        self.spend(mask.size / 3)
        cursor = left
        for text, sup in runs:
            scale = font.run_scale(sup)
            adv = self._advances_of(text, scale, font.thickness)
            ends = cursor + np.cumsum(adv)
            starts = ends - adv
            # Only the characters that can touch the mask are drawn.
            j0 = int(np.searchsorted(ends, x_lo - pad))
            j1 = int(np.searchsorted(starts, x_hi + pad, side="right"))
            if j0 < j1:
                lift = font.cap * 0.45 if sup else 0.0
                org = (round(starts[j0]) - x_lo, round(baseline - lift) - top)
                self.spend((j1 - j0) * (5 + (_CAP * scale) ** 2 / 10))
                cv2.putText(mask, text[j0:j1], org, _FONT, scale, 255, font.thickness, _AA)
            cursor = float(ends[-1]) if len(ends) else cursor
        self._paint(top, x_lo, self._halo(mask, font.halo), _BLACK)
        self._paint(top, x_lo, mask, color)

    def text_lines(
        self,
        lines: Sequence[str],
        x: float,
        y: float,
        color: BGRA,
        font: _Font,
        *,
        anchor: Literal["baseline", "below-left", "centre"],
    ) -> None:
        """Lines of text. ``anchor``: "baseline" (x, y is the left end of the first
        baseline), "below-left" (the bottom-left corner of the block) or "centre" (its
        centre); the last two keep the block inside the canvas when it fits."""
        runs = [_ascii_runs(line) for line in lines]
        lh = font.line_height
        if anchor == "baseline":
            left, top = x, y - font.cap
        else:
            block_w = max((self.text_width(r, font) for r in runs), default=0.0)
            block_h = font.cap + (len(lines) - 1) * lh + font.descent
            if anchor == "centre":
                left, top = x - block_w / 2, y - block_h / 2
            else:
                left, top = x, y - block_h
            left = min(max(left, 0.0), max(self.width - block_w, 0.0))
            top = min(max(top, 0.0), max(self.height - block_h, 0.0))
        first = max(0, math.floor((-font.descent - font.halo - top - font.cap) / lh))
        for i in range(first, len(runs)):
            baseline = top + font.cap + i * lh
            if baseline - font.cap - font.halo > self.height:
                break
            self._text_line(runs[i], left, baseline, color, font)

    def label(
        self, lines: Sequence[str], x: float, y: float, color: BGRA, *, centre: bool = False
    ) -> None:
        """A measurement label: above-right of (x, y), or centred on it; kept on canvas."""
        if not lines:
            return
        gap = 6 * self.scale
        x = min(max(x, 0.0), float(self.width))
        y = min(max(y, 0.0), float(self.height))
        if centre:
            self.text_lines(lines, x, y, color, self.label_font, anchor="centre")
        else:
            self.text_lines(lines, x + gap, y - gap, color, self.label_font, anchor="below-left")

    # -- finishing ------------------------------------------------------------------------

    def finish(self, background: Image | None, order: Literal["rgb", "bgr"]) -> Image:
        """Fills under strokes, then straight RGBA/BGRA, or over ``background`` (RGB or
        grey) as RGB/BGR. Works in place on the stroke layer, a band of rows at a time."""
        h, w = self.height, self.width
        rows = max(1, _CHUNK_PIXELS // w)
        out = self.strokes if background is None else np.empty((h, w, 3), dtype=np.uint8)
        for r0 in range(0, h, rows):
            band = self.strokes[r0 : r0 + rows]
            under = None if self.fills is None else self.fills[r0 : r0 + rows]
            if under is not None and under[..., 3].any():
                # strokes + FILL_ALPHA * fills * (1 - stroke alpha), premultiplied
                clear = cv2.merge([255 - band[..., 3]] * 4)
                band[...] = cv2.add(band, cv2.multiply(under, clear, scale=FILL_ALPHA / 255))
            drawn = bool(band[..., 3].any())
            if drawn and order == "rgb":
                cv2.cvtColor(band, cv2.COLOR_BGRA2RGBA, dst=band)
            if background is None:
                if drawn:
                    cv2.cvtColor(band, cv2.COLOR_mRGBA2RGBA, dst=band)
                continue
            bg: npt.NDArray[Any] = background[r0 : r0 + rows]
            if bg.ndim == 2:
                bg = cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)
            elif order == "bgr":
                bg = cv2.cvtColor(bg, cv2.COLOR_RGB2BGR)
            if not drawn:
                out[r0 : r0 + rows] = bg
                continue
            clear = cv2.merge([255 - band[..., 3]] * 3)
            shown = cv2.multiply(bg, clear, scale=1 / 255)
            out[r0 : r0 + rows] = cv2.add(cv2.cvtColor(band, cv2.COLOR_BGRA2BGR), shown)
        return out


# -- shapes -------------------------------------------------------------------------------


def _arrow(c: _Canvas, pts: FloatArray, color: BGRA, width_px: float) -> None:
    tail, tip = pts[0], pts[1]
    length = float(np.hypot(*(tip - tail)))
    if length < 1e-6:
        c.disc(float(tip[0]), float(tip[1]), max(width_px, 1.0), color)
        return
    u = (tip - tail) / length
    n = np.array([-u[1], u[0]])
    head = min(max(10 * c.scale, 3 * width_px), 0.6 * length)
    base = tip - u * head
    c.triangle(np.array([tip, base + n * head / 2, base - n * head / 2]), color)
    # The shaft ends inside the head, so its round cap does not show past the barbs.
    c.stroke(np.array([tail, base + u * head / 4]), color, width_px, closed=False)


def _angle(c: _Canvas, pts: FloatArray, color: BGRA, width_px: float, label: list[str]) -> None:
    a, v, b = pts
    c.stroke(pts, color, width_px, closed=False)
    la, lb = float(np.hypot(*(a - v))), float(np.hypot(*(b - v)))
    if min(la, lb) < 1e-6:
        c.label(label, float(v[0]), float(v[1]), color)
        return
    ua, ub = (a - v) / la, (b - v) / lb
    radius = min(20 * c.scale, 0.4 * min(la, lb))
    start = math.degrees(math.atan2(ua[1], ua[0]))
    sweep = (math.degrees(math.atan2(ub[1], ub[0])) - start) % 360
    if sweep > 180:
        start, sweep = start + sweep, 360 - sweep
    if radius >= 2:
        c.arc(float(v[0]), float(v[1]), radius, start, sweep, color)
    # The value sits on the bisector, just beyond the arc.
    bisector = ua + ub
    norm = float(np.hypot(*bisector))
    bisector = bisector / norm if norm > 1e-6 else np.array([-ua[1], ua[0]])
    font = c.label_font
    half_w = max((c.text_width(_ascii_runs(line), font) for line in label), default=0.0) / 2
    half_h = (font.cap + font.descent + (len(label) - 1) * font.line_height) / 2
    reach = abs(bisector[0]) * half_w + abs(bisector[1]) * half_h
    centre = v + bisector * (radius + reach + 3 * c.scale)
    c.label(label, float(centre[0]), float(centre[1]), color, centre=True)


def _ellipse_points(p0: FloatArray, p1: FloatArray) -> FloatArray:
    lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
    centre, axes = (lo + hi) / 2, (hi - lo) / 2
    # Chords within about 0.1 px of the curve: n ~ pi * sqrt(5 r).
    n = int(min(4096, max(16, math.ceil(math.pi * math.sqrt(5 * float(axes.max()))))))
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.column_stack([centre[0] + axes[0] * np.cos(t), centre[1] + axes[1] * np.sin(t)])


def measurement_label(annotation: Annotation, image: ImageInfo) -> list[str]:
    """The lines of the label ``render_overlay`` draws by a measurable shape: the length,
    area or angle from ``annotations.measure.measure`` and, with pixel values, the ROI
    statistics. Empty for points, text and an angle with a zero-length arm."""
    try:
        m = measure(annotation, image)
    except ValueError:  # e.g. non-finite pixel values inside the ROI: geometry only
        m = measure(annotation, ImageInfo(calibration=image.calibration))
    detector = " (detector)" if m.get("calibration") == IMAGER_PIXEL_SPACING else ""
    length, area, angle = m.get("length"), m.get("area"), m.get("angle_deg")
    if isinstance(length, float):
        return [_num(length) + " " + str(m["length_unit"]) + detector]
    if isinstance(angle, float):
        return [_num(angle) + "°"]
    if not isinstance(area, float):
        return []
    lines = [_num(area) + " " + str(m["area_unit"])[:-1] + "²" + detector]
    if "n_pixels" in m:
        unit = str(m.get("unit") or "")
        mean, sd, lo, hi = m.get("mean"), m.get("sd"), m.get("min"), m.get("max")
        if isinstance(mean, float) and isinstance(lo, float) and isinstance(hi, float):
            sd_text = " SD " + _num(sd) if isinstance(sd, float) else ""
            lines.append(("mean " + _num(mean) + " " + unit).rstrip() + sd_text)
            lines.append(f"min {lo:.1f} max {hi:.1f} n {m['n_pixels']}")
        else:
            lines.append("no pixel inside")
    return lines


def _measurement_lines(c: _Canvas, annotation: Annotation, outline: FloatArray) -> list[str]:
    """``measurement_label``, paid for: ROI statistics cost like a fill of the region."""
    regions = (Kind.RECTANGLE, Kind.ELLIPSE, Kind.FREEHAND)
    if c.info.pixels is not None and annotation.kind in regions:
        lo = np.clip(outline.min(axis=0), 0, (c.width, c.height))
        hi = np.clip(outline.max(axis=0), 0, (c.width, c.height))
        c.spend(3 * c.rows_spanned(outline) + float(np.prod(hi - lo)) / 10)
    return measurement_label(annotation, c.info)


def _draw(c: _Canvas, ann: Annotation) -> None:
    kind = ann.kind
    color = _bgra(ann.style.color)
    width_px = ann.style.width * c.scale
    pts = np.asarray(ann.geometry.points, dtype=np.float64).reshape(-1, 2)
    margin = width_px + 40 * c.scale
    if kind is Kind.TEXT:
        size = ann.style.font_size if ann.style.font_size is not None else TEXT_FONT_CSS_PX
        text = (ann.geometry.text or "").replace("\r\n", "\n").replace("\r", "\n")
        font = _Font.of(size, c.scale)
        x, y = float(pts[0, 0]), float(pts[0, 1])
        c.text_lines(text.split("\n"), x, y, color, font, anchor="baseline")
    elif kind is Kind.POINT:
        x, y = float(pts[0, 0]), float(pts[0, 1])
        radius = max(2.0 * c.scale, width_px)
        c.disc(x, y, radius + max(1.0, c.scale), _BLACK)
        c.disc(x, y, radius, color)
    elif kind is Kind.ARROW:
        _arrow(c, pts, color, width_px)
        if c.visible(pts, margin):
            c.label(_measurement_lines(c, ann, pts), float(pts[0, 0]), float(pts[0, 1]), color)
    elif kind is Kind.ANGLE:
        if c.visible(pts, margin):
            _angle(c, pts, color, width_px, _measurement_lines(c, ann, pts))
    elif kind in (Kind.LINE, Kind.POLYLINE) or (kind is Kind.FREEHAND and not ann.geometry.closed):
        c.stroke(pts, color, width_px, closed=False)
        if c.visible(pts, margin):
            end = pts[-1]
            c.label(_measurement_lines(c, ann, pts), float(end[0]), float(end[1]), color)
    else:  # the regions: rectangle, ellipse, closed freehand
        if kind is Kind.RECTANGLE:
            (x0, y0), (x1, y1) = pts
            outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif kind is Kind.ELLIPSE:
            outline = _ellipse_points(pts[0], pts[1])
        else:
            outline = pts
        if ann.style.fill:
            c.fill(outline, color)
        c.stroke(outline, color, width_px, closed=True)
        if c.visible(outline, margin):
            lo, hi = outline.min(axis=0), outline.max(axis=0)
            lines = _measurement_lines(c, ann, outline)
            c.label(lines, float(hi[0]), float(lo[1]), color)


# -- API ----------------------------------------------------------------------------------


def _render(
    annotations: Iterable[Annotation | Mapping[str, Any]],
    width: int,
    height: int,
    order: Literal["rgb", "bgr"],
    *,
    spacing: Calibration | None = None,
    pixels: npt.NDArray[Any] | None = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    modality: str | None = None,
    unit: str | None = None,
    background: npt.NDArray[Any] | None = None,
    px_per_css: float | None = None,
) -> Image:
    w = _check_side("width", width)
    h = _check_side("height", height)
    if pixels is not None:
        if pixels.shape != (h, w) or pixels.dtype.kind not in "iuf":
            raise ValueError("pixels: expected a 2-D array of numbers, (height, width)")
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise ValueError("rescale slope and intercept must be finite")
    if background is not None:
        if background.dtype != np.uint8 or background.shape not in ((h, w), (h, w, 3)):
            raise ValueError("background: expected uint8, (height, width) or (height, width, 3)")
    scale = default_px_per_css(w, h) if px_per_css is None else px_per_css
    if not (math.isfinite(scale) and 0 < scale <= MAX_SIDE):
        raise ValueError("px_per_css: must be a finite number > 0")
    items = in_drawing_order(annotations)
    info = ImageInfo(spacing or Calibration(), pixels, slope, intercept, modality, unit)
    canvas = _Canvas(w, h, scale, info)
    for ann in items:
        _draw(canvas, ann)
    return canvas.finish(background, order)


def render_overlay(
    annotations: Iterable[Annotation | Mapping[str, Any]],
    width: int,
    height: int,
    *,
    spacing: Calibration | None = None,
    pixels: npt.NDArray[Any] | None = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    modality: str | None = None,
    unit: str | None = None,
    background: npt.NDArray[Any] | None = None,
    px_per_css: float | None = None,
) -> Image:
    """Draw one image's annotations (JSON values, validated here, or ``Annotation``s).

    Returns a straight-alpha RGBA ``uint8`` array of shape (height, width, 4), transparent
    where nothing is drawn; with ``background`` (a ``uint8`` grey (height, width) or RGB
    (height, width, 3) image) the overlay is composited onto it and an RGB array of shape
    (height, width, 3) is returned instead.

    ``spacing`` calibrates lengths and areas (pixels without it). ``pixels`` is the frame's
    stored values, (height, width), for ROI statistics, rescaled by ``slope`` and
    ``intercept`` (``modality`` "CT" gives HU; ``unit`` wins). ``px_per_css`` overrides the
    image pixels per CSS pixel (module docstring).

    Raises ``ValueError`` for a size outside 1..``MAX_SIDE`` or mismatched arrays,
    ``annotations.AnnotationError`` for an invalid annotation and ``OverlayTooComplex``
    past ``WORK_LIMIT``.
    """
    return _render(
        annotations,
        width,
        height,
        "rgb",
        spacing=spacing,
        pixels=pixels,
        slope=slope,
        intercept=intercept,
        modality=modality,
        unit=unit,
        background=background,
        px_per_css=px_per_css,
    )


def _encode(native: npt.NDArray[Any]) -> bytes:
    """PNG of a cv2-order (BGR/BGRA/grey) image. An overlay, mostly transparent, takes the
    fast settings (SUB filter, run-length deflate): 8192 x 8192 in well under a second."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    if native.ndim == 3 and native.shape[2] == 4:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        if _PNG_FILTER is not None:
            params += [_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, buf = cv2.imencode(".png", native, params)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an RGBA (h, w, 4), RGB (h, w, 3) or grey (h, w) ``uint8`` image."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("image: expected uint8 grey, RGB or RGBA")
    native: npt.NDArray[Any] = image
    if image.ndim == 3:
        if image.shape[2] == 4:
            native = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
        elif image.shape[2] == 3:
            native = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        else:
            raise ValueError("image: expected 1, 3 or 4 channels")
    return _encode(native)


def render_png(
    annotations: Iterable[Annotation | Mapping[str, Any]],
    width: int,
    height: int,
    *,
    spacing: Calibration | None = None,
    pixels: npt.NDArray[Any] | None = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    modality: str | None = None,
    unit: str | None = None,
    background: npt.NDArray[Any] | None = None,
    px_per_css: float | None = None,
) -> bytes:
    """``encode_png(render_overlay(...))``, without the channel reordering in between."""
    native = _render(
        annotations,
        width,
        height,
        "bgr",
        spacing=spacing,
        pixels=pixels,
        slope=slope,
        intercept=intercept,
        modality=modality,
        unit=unit,
        background=background,
        px_per_css=px_per_css,
    )
    return _encode(native)
