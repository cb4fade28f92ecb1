"""Classical (no-model) detector of text lines: burned-in annotation on US / secondary captures,
and printed text in photos or scans of lab reports.

Why classical: the machine has no network beyond package registries and opencv-python-headless
ships no text-detection weights (EAST, DB), so this uses morphology and local statistics only.

Pipeline, per level of a small image pyramid (full resolution finds 6–40 px lines, the next
level up to 80 px):

1. morphological gradient (polarity-free: white-on-black overlays and black-on-white reports);
2. strong edges: gradient above max(Otsu, a floor); at full resolution also faint edges (low-
   contrast banner text, e.g. light grey on grey) where faint edges are sparse, which excludes
   tissue and speckle, where nearly every pixel is one;
3. long horizontal / vertical runs (borders, rulers, banner edges) are removed so that text
   touching them does not fuse into an image-wide blob;
4. a short horizontal closing joins neighbouring glyphs into word/line blobs, whose bounding
   boxes are filtered on height and aspect (vectorised);
5. each candidate is verified on its grey crop: Otsu splits ink from background, and text needs
   a background that is flat compared with the ink contrast (1 px halo excluded, so anti-aliased
   or blurred text still qualifies), at least two glyph-sized ink components and a modest ink
   fill. Speckle, tissue, gradients and blobs fail the flat-background test; rulers, ticks and
   bars fail the glyph count.

Bounded: the image is downscaled to at most ``MAX_SIDE`` before any work, at most two or three
pyramid levels are searched, and the candidates verified per level and the regions returned are
capped. Measured on this 2-core machine (median, one thread busy): 640×480 US frame 5–9 ms,
1024×768 13–14 ms, 12 MP photo 30–35 ms (downscale included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

__all__ = ["MAX_SIDE", "Box", "downscale", "find_text_regions"]

# Longest side looked at. Large photos are downscaled first: cost stays O(MAX_SIDE²).
MAX_SIDE = 1280
# Text line height accepted at each pyramid level, in working pixels.
_MIN_H = 6
_MAX_H = 40
# The pyramid stops before a level's short side drops below this.
_MIN_LEVEL_SIDE = 200
# Gradient values below this are never edges (speckle, JPEG noise, smooth anatomy).
_EDGE_FLOOR = 40
# Faint-edge map floor, for low-contrast text on a flat banner (verified against flatness).
_FAINT_EDGE = 8
# Ink minus background grey level, at least.
_MIN_CONTRAST = 8.0
# Ink contrast over background noise (std, halo excluded) that a text line must reach; measured
# here: rendered and photographed text >= 15, tissue and speckle <= 13.
_MIN_FLATNESS = 12.0
# Candidates verified per pyramid level at most (largest first); bounds pathological inputs.
_MAX_CANDIDATES = 400

_K3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_JOIN = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 1))

U8 = npt.NDArray[np.uint8]
# Intermediate cv2 results are typed as cv2's MatLike (uint8 in practice).


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box in pixels of the image passed in (x, y: top-left corner)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def intersection(self, other: Box) -> int:
        ix = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        iy = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0, ix) * max(0, iy)

    def union(self, other: Box) -> Box:
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def scaled(self, f: float) -> Box:
        return Box(round(self.x * f), round(self.y * f), round(self.w * f), round(self.h * f))


def find_text_regions(gray: npt.NDArray[np.generic], *, max_regions: int = 64) -> list[Box]:
    """Boxes of likely text lines in ``gray``, in reading order (top to bottom, left to right).

    ``gray`` is a 2-D array (any integer or float dtype; non-uint8 is min-max scaled) or an
    H×W×3 BGR uint8 image. Returns at most ``max_regions`` boxes (the most confident ones).
    """
    if max_regions <= 0:
        return []
    img: MatLike = _to_gray_u8(gray)
    h0, w0 = img.shape
    if h0 < _MIN_H or w0 < _MIN_H:
        return []
    img, inv = downscale(img, MAX_SIDE)

    scored: list[tuple[float, Box]] = []
    level: MatLike = img
    factor = 1.0
    while True:
        for score, box in _detect_level(level, faint=factor == 1.0):
            scored.append((score, box.scaled(factor)))
        if min(level.shape) < 2 * _MIN_LEVEL_SIDE:
            break
        level = cv2.pyrDown(level)
        factor *= 2.0

    merged = _merge(scored)
    merged.sort(key=lambda sb: -sb[0])
    out = [_clip(b.scaled(inv), w0, h0) for _, b in merged[:max_regions]]
    out.sort(key=lambda b: (b.y, b.x))
    return out


def downscale(img: MatLike, max_side: int) -> tuple[MatLike, float]:
    """``img`` shrunk so its longer side is at most ``max_side``, and the factor back up.

    Area averaging by an integer factor first (3× cheaper than INTER_AREA at a fractional
    factor: 17 vs 50 ms for 12 MP BGR here), then bilinear for the remaining < 2×.
    """
    h, w = img.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return img, 1.0
    k = longest // max_side
    if k >= 2:
        img = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    sh, sw = img.shape[:2]
    s = max_side / max(sh, sw)
    if s < 1.0:
        size = (max(1, round(sw * s)), max(1, round(sh * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return img, longest / max(img.shape[:2])


def _to_gray_u8(a: npt.NDArray[np.generic]) -> U8:
    if a.ndim == 3 and a.shape[2] in (3, 4) and a.size:
        # cvtColor takes uint8/uint16/float32; anything else is converted, never truncated.
        if a.dtype not in (np.uint8, np.uint16, np.float32):
            a = a.astype(np.float32)
        code = cv2.COLOR_BGR2GRAY if a.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        a = np.asarray(cv2.cvtColor(cast(MatLike, a), code))
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey or H×W×3 image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if a.size == 0:
        return np.zeros(a.shape, np.uint8)
    out = np.empty(a.shape, np.uint8)
    cv2.normalize(a.astype(np.float32, copy=False), out, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    return out


def _detect_level(img: MatLike, *, faint: bool) -> list[tuple[float, Box]]:
    grad = cv2.morphologyEx(img, cv2.MORPH_GRADIENT, _K3)
    otsu, _ = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, edges = cv2.threshold(grad, max(float(otsu), _EDGE_FLOOR), 255, cv2.THRESH_BINARY)
    if faint:
        edges = _add_faint_edges(edges, grad)
    out: list[tuple[float, Box]] = []
    for box in _candidates(edges):
        score = _verify(img, box)
        if score > 0.0:
            out.append((score, box))
    return out


def _add_faint_edges(strong: MatLike, grad: MatLike) -> MatLike:
    """Add faint edges (low-contrast banner text, e.g. light grey on grey) where they are
    sparse: in tissue and speckle nearly every pixel is a faint edge, around text few are.
    Only at full resolution: downsampling erases faint strokes anyway."""
    _, faint = cv2.threshold(grad, _FAINT_EDGE, 255, cv2.THRESH_BINARY)
    # Density over 8×8 cells (area downscale, nearest upscale): 3× cheaper than a box blur.
    h, w = grad.shape
    cells = cv2.resize(faint, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    _, cells = cv2.threshold(cells, 0.7 * 255, 255, cv2.THRESH_BINARY_INV)
    quiet = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.bitwise_or(strong, cv2.bitwise_and(faint, quiet))


def _candidates(edges: MatLike) -> list[Box]:
    w = edges.shape[1]
    # Long straight edges (borders, rulers, banner edges) are never glyphs; removed so that text
    # touching them does not fuse into one image-wide blob.
    edges = cv2.subtract(edges, _long_lines(edges))
    # Join strokes of neighbouring glyphs (gap up to ~6 px) into one blob per word or line.
    closed = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, _JOIN)
    # findContours + boundingRect: several times faster here than connectedComponentsWithStats.
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int32).reshape(-1, 4)
    bw, bh = rects[:, 2], rects[:, 3]
    keep = (bh >= _MIN_H) & (bh <= _MAX_H) & (bw >= bh) & (bw < w - 4)
    idx = np.flatnonzero(keep)
    if idx.size > _MAX_CANDIDATES:
        idx = idx[np.argsort(-(bw[idx] * bh[idx]), kind="stable")[:_MAX_CANDIDATES]]
    return [Box(x, y, bwi, bhi) for x, y, bwi, bhi in rects[idx].tolist()]


def _long_lines(edges: MatLike) -> MatLike:
    """Runs of edge pixels longer than a fifth of the image side (at least 64 px).

    Short kernels would also hit the top and bottom edges of a row of small dense glyphs, so
    lines must be long; a long opening costs O(length) per pixel, so it runs on a map reduced
    4× along the line direction (a cell is "on" when 3 of its 4 pixels are).
    """
    h, w = edges.shape[:2]
    out = []
    for along, across, horizontal in ((w, h, True), (h, w, False)):
        cells = max(1, along // 4)
        size = (cells, across) if horizontal else (across, cells)
        small = cv2.resize(edges, size, interpolation=cv2.INTER_AREA)
        _, small = cv2.threshold(small, 190, 255, cv2.THRESH_BINARY)
        k = max(2, max(64, along // 5) // 4)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, 1) if horizontal else (1, k))
        small = cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))
    return cv2.bitwise_or(out[0], out[1])


def _verify(img: MatLike, box: Box) -> float:
    """Score > 0 if the grey crop looks like ink on a flat background, else 0."""
    # No padding needed: the gradient already puts >= 1 px of background inside the box.
    crop = img[box.y : box.y + box.h, box.x : box.x + box.w]
    _, bin_ = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    n = crop.size
    n_hi = cv2.countNonZero(bin_)
    if n_hi == 0 or n_hi == n:
        return 0.0
    # Ink is the minority class (text covers less of its line box than the background does).
    if n_hi * 2 >= n:
        bin_ = cv2.bitwise_not(bin_)
        n_hi = n - n_hi
    ink_frac = n_hi / n
    if not 0.08 <= ink_frac <= 0.6:
        return 0.0
    # Background statistics exclude a 1 px halo around the ink: anti-aliasing and blur put
    # intermediate values there, which would make clean text look as noisy as tissue.
    bg = cv2.bitwise_not(cv2.dilate(bin_, _K3))
    if cv2.countNonZero(bg) < 4:
        return 0.0
    ink_mean_s, ink_std_s = cv2.meanStdDev(crop, mask=bin_)
    bg_mean_s, bg_std_s = cv2.meanStdDev(crop, mask=bg)
    contrast = abs(float(ink_mean_s[0, 0]) - float(bg_mean_s[0, 0]))
    if contrast < _MIN_CONTRAST:
        return 0.0
    # Faint ink must be one flat colour (rendered banner text), not a smear of dim speckle.
    if contrast < _EDGE_FLOOR and float(ink_std_s[0, 0]) * 5.0 > contrast:
        return 0.0
    # Tiny boxes have few background pixels, so their noise estimate is less certain.
    min_flatness = _MIN_FLATNESS if box.h >= 8 else 1.6 * _MIN_FLATNESS
    denom = float(bg_std_s[0, 0]) + 1.0
    if contrast < min_flatness * denom - 1e-6:  # tolerance: a 12-level flat banner is exact
        return 0.0
    glyphs = _glyph_count(bin_, box.h)
    if glyphs < 2:
        return 0.0
    flatness = contrast / denom
    return flatness * min(glyphs, 10) * box.h


def _glyph_count(ink: MatLike, line_h: int) -> int:
    """Ink components tall enough to be glyphs (not dots, not noise) and not wider than 2 lines."""
    contours, _ = cv2.findContours(ink, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_h = max(3, line_h // 3)
    count = 0
    for c in contours:
        _, _, cw, ch = cv2.boundingRect(c)
        if ch >= min_h and cw <= 2 * line_h:
            count += 1
    return count


def _merge(scored: list[tuple[float, Box]]) -> list[tuple[float, Box]]:
    """Union boxes that overlap (same line seen at two pyramid levels, or split words)."""
    out: list[tuple[float, Box]] = []
    for score, box in sorted(scored, key=lambda sb: -sb[1].area):
        for i, (s2, b2) in enumerate(out):
            inter = box.intersection(b2)
            if inter > 0 and inter >= 0.3 * min(box.area, b2.area):
                out[i] = (max(score, s2), b2.union(box))
                break
        else:
            out.append((score, box))
    return out


def _clip(b: Box, w: int, h: int) -> Box:
    x0, y0 = max(0, b.x), max(0, b.y)
    x1, y1 = min(w, b.x + b.w), min(h, b.y + b.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))
