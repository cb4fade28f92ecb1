/**
 * Measurements from the image, not the screen: lengths, angles, areas and ROI statistics.
 * A pure port of annotations/measure.py (keep the two in step), so the browser shows what
 * the server computes.
 *
 * Image pixel coordinates: `x` along columns, `y` down rows, the centre of pixel (row r,
 * column c) at `(c + 0.5, r + 0.5)`. Calibration (PS3.3 §10.7.1.1/§10.7.1.3): spacing is
 * `[row spacing, column spacing]` = `[dy, dx]` in mm, so a step along `x` is scaled by the
 * column spacing. Lengths, areas and angles are computed in physical space.
 *
 * ROI statistics use the stored values with the linear rescale applied (`slope * stored +
 * intercept`). A pixel belongs to the ROI when its centre lies inside the shape: inside or
 * on the boundary for rectangles and ellipses; by the even-odd rule with half-open edges
 * for polygons (closed freehand strokes), whose area is the shoelace area of the outline.
 * The SD is the sample SD (n - 1), null for a single pixel; an ROI containing no pixel
 * centre has `nPixels` 0 and null statistics, never NaN.
 */

export type Point = readonly [number, number];
export type CalibrationSource = 'PixelSpacing' | 'ImagerPixelSpacing' | 'none';

export interface Calibration {
  /** dy: mm between row centres (1 when uncalibrated). */
  readonly rowSpacing: number;
  /** dx: mm between column centres (1 when uncalibrated). */
  readonly columnSpacing: number;
  readonly source: CalibrationSource;
}

export const UNCALIBRATED: Calibration = { rowSpacing: 1, columnSpacing: 1, source: 'none' };

/** From Pixel Spacing (0028,0030), `[row spacing, column spacing]`. */
export function fromPixelSpacing(value: readonly [number, number]): Calibration {
  return { rowSpacing: value[0], columnSpacing: value[1], source: 'PixelSpacing' };
}

export function lengthUnit(cal: Calibration): 'mm' | 'px' {
  return cal.source === 'none' ? 'px' : 'mm';
}

export function areaUnit(cal: Calibration): 'mm2' | 'px2' {
  return cal.source === 'none' ? 'px2' : 'mm2';
}

/** One frame of stored values, row-major, with its Modality LUT rescale. */
export interface ImageInfo {
  readonly calibration: Calibration;
  readonly rows: number;
  readonly columns: number;
  /** rows × columns stored values, or null to skip ROI statistics. */
  readonly pixels: ArrayLike<number> | null;
  readonly slope: number;
  readonly intercept: number;
  /** "HU" for CT. */
  readonly unit: string;
}

export interface RoiStats {
  nPixels: number;
  mean: number | null;
  sd: number | null;
  min: number | null;
  max: number | null;
  unit: string;
}

/** The measurement fields of one annotation (keys fixed per kind, as measure.py). */
export interface Measurement {
  length?: number;
  lengthUnit?: 'mm' | 'px';
  angleDeg?: number | null;
  area?: number;
  areaUnit?: 'mm2' | 'px2';
  stats?: RoiStats;
  calibration?: CalibrationSource;
}

/** The part of an annotation `measure` reads. */
export interface Measurable {
  readonly kind: string;
  readonly geometry: { readonly points: readonly Point[]; readonly closed?: boolean };
}

// ---------------------------------------------------------------- lengths, angles, areas

export function lengthMm(p0: Point, p1: Point, cal: Calibration): number {
  return Math.hypot((p1[0] - p0[0]) * cal.columnSpacing, (p1[1] - p0[1]) * cal.rowSpacing);
}

export function polylineLength(points: readonly Point[], cal: Calibration): number {
  let sum = 0;
  for (let i = 1; i < points.length; i++) {
    const p = points[i - 1];
    const q = points[i];
    if (p && q) sum += lengthMm(p, q, cal);
  }
  return sum;
}

/** The angle a-vertex-b in degrees, 0..180, in physical space; null if an arm has zero length. */
export function angleDeg(a: Point, vertex: Point, b: Point, cal: Calibration = UNCALIBRATED): number | null {
  const ux = (a[0] - vertex[0]) * cal.columnSpacing;
  const uy = (a[1] - vertex[1]) * cal.rowSpacing;
  const wx = (b[0] - vertex[0]) * cal.columnSpacing;
  const wy = (b[1] - vertex[1]) * cal.rowSpacing;
  if ((ux === 0 && uy === 0) || (wx === 0 && wy === 0)) return null;
  return (Math.atan2(Math.abs(ux * wy - uy * wx), ux * wx + uy * wy) * 180) / Math.PI;
}

interface Box {
  xmin: number;
  ymin: number;
  xmax: number;
  ymax: number;
}

function boxOf(points: readonly Point[]): Box {
  let xmin = Infinity;
  let ymin = Infinity;
  let xmax = -Infinity;
  let ymax = -Infinity;
  for (const [x, y] of points) {
    if (x < xmin) xmin = x;
    if (x > xmax) xmax = x;
    if (y < ymin) ymin = y;
    if (y > ymax) ymax = y;
  }
  return { xmin, ymin, xmax, ymax };
}

export function rectangleArea(p0: Point, p1: Point, cal: Calibration): number {
  return Math.abs(p1[0] - p0[0]) * cal.columnSpacing * Math.abs(p1[1] - p0[1]) * cal.rowSpacing;
}

export function ellipseArea(p0: Point, p1: Point, cal: Calibration): number {
  return (Math.PI / 4) * rectangleArea(p0, p1, cal);
}

/** Shoelace area of the closed outline (absolute net signed area if self-intersecting). */
export function polygonArea(points: readonly Point[], cal: Calibration): number {
  let twice = 0;
  const n = points.length;
  for (let i = 0; i < n; i++) {
    const p = points[i];
    const q = points[(i + 1) % n];
    if (p && q) twice += p[0] * q[1] - p[1] * q[0];
  }
  return (Math.abs(twice) / 2) * cal.columnSpacing * cal.rowSpacing;
}

// ---------------------------------------------------------------- ROI masks

export type RoiKind = 'rectangle' | 'ellipse' | 'polygon';

/** Indices i in [0, size) whose centre i + 0.5 lies in [lo, hi], as [start, stop). */
function indexRange(lo: number, hi: number, size: number): [number, number] {
  const start = Math.max(Math.ceil(lo - 0.5), 0);
  const stop = Math.min(Math.floor(hi - 0.5) + 1, size);
  return [start, Math.max(stop, start)];
}

/** Reused scan-conversion scratch (grown on demand): no allocation per live redraw. */
let parityScratch = new Uint8Array(0);

function scratch(size: number): Uint8Array {
  if (parityScratch.length < size) parityScratch = new Uint8Array(Math.max(size, parityScratch.length * 2));
  parityScratch.fill(0, 0, size);
  return parityScratch;
}

/**
 * Calls `visit(row, column)` for every pixel of a rows × columns image whose centre lies
 * inside the shape (measure.py `_block_mask`), row by row, left to right.
 */
export function forEachRoiPixel(
  rows: number,
  columns: number,
  kind: RoiKind,
  points: readonly Point[],
  visit: (row: number, column: number) => void,
): void {
  if (points.length === 0) return;
  if ((kind === 'rectangle' || kind === 'ellipse') && points.length !== 2) return;
  const { xmin, ymin, xmax, ymax } = boxOf(points);
  if (![xmin, ymin, xmax, ymax].every(Number.isFinite)) return;
  const [r0, r1] = indexRange(ymin, ymax, rows);
  const [c0, c1] = indexRange(xmin, xmax, columns);
  if (r0 === r1 || c0 === c1) return;
  if (kind === 'rectangle') {
    for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) visit(r, c);
    return;
  }
  if (kind === 'ellipse') {
    const a = (xmax - xmin) / 2;
    const b = (ymax - ymin) / 2;
    if (a === 0 || b === 0) return;
    for (let r = r0; r < r1; r++) {
      const v = (r + 0.5 - (ymin + b)) / b;
      const vv = v * v;
      for (let c = c0; c < c1; c++) {
        const u = (c + 0.5 - (xmin + a)) / a;
        if (vv + u * u <= 1.0) visit(r, c);
      }
    }
    return;
  }
  polygonPixels(points, r0, r1, c0, c1, visit);
}

/**
 * Even-odd scan conversion of the closed outline over rows [r0, r1) × cols [c0, c1), as
 * measure.py `_polygon_mask`: each edge crosses the centre lines of a half-open run of rows;
 * a crossing at x toggles the pixels of its row whose centre lies left of x.
 */
function polygonPixels(
  points: readonly Point[],
  r0: number,
  r1: number,
  c0: number,
  c1: number,
  visit: (row: number, column: number) => void,
): void {
  const w = c1 - c0;
  const stride = w + 1;
  const parity = scratch((r1 - r0) * stride);
  const n = points.length;
  const clip = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  for (let i = 0; i < n; i++) {
    const p = points[i];
    const q = points[(i + 1) % n];
    if (!p || !q) continue;
    const [xa, ya] = p;
    const [xb, yb] = q;
    const start = clip(Math.ceil(Math.min(ya, yb) - 0.5), r0, r1);
    const stop = clip(Math.ceil(Math.max(ya, yb) - 0.5), r0, r1);
    for (let row = start; row < stop; row++) {
      const t = (row + 0.5 - ya) / (yb - ya);
      const x = xa + t * (xb - xa);
      const k = clip(Math.ceil(x - 0.5), c0, c1) - c0;
      const at = (row - r0) * stride + k;
      parity[at] = (parity[at] ?? 0) ^ 1;
    }
  }
  // inside[c] = xor of the toggles at k > c (crossings right of the centre of column c):
  // accumulate from the right in place, so parity[base + k] becomes the xor over j >= k.
  for (let r = 0; r < r1 - r0; r++) {
    const base = r * stride;
    let acc = 0;
    for (let k = w; k >= 1; k--) {
      acc ^= parity[base + k] ?? 0;
      parity[base + k] = acc;
    }
    for (let c = 0; c < w; c++) if (parity[base + c + 1]) visit(r + r0, c + c0);
  }
}

/** Mean, sample SD, min and max of the rescaled values inside the ROI. */
export function roiStats(image: ImageInfo, kind: RoiKind, points: readonly Point[]): RoiStats {
  const pixels = image.pixels;
  let n = 0;
  let sum = 0;
  let lo = Infinity;
  let hi = -Infinity;
  if (pixels) {
    forEachRoiPixel(image.rows, image.columns, kind, points, (r, c) => {
      const v = pixels[r * image.columns + c] ?? 0;
      n += 1;
      sum += v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    });
  }
  if (!pixels || n === 0) return { nPixels: 0, mean: null, sd: null, min: null, max: null, unit: image.unit };
  // Statistics of the stored values (the sum of integers is exact), then the linear rescale.
  const storedMean = sum / n;
  let sq = 0;
  if (n > 1) {
    forEachRoiPixel(image.rows, image.columns, kind, points, (r, c) => {
      const d = (pixels[r * image.columns + c] ?? 0) - storedMean;
      sq += d * d;
    });
  }
  const { slope, intercept } = image;
  const ends = [lo * slope + intercept, hi * slope + intercept] as const;
  return {
    nPixels: n,
    mean: storedMean * slope + intercept,
    sd: n > 1 ? Math.abs(slope) * Math.sqrt(sq / (n - 1)) : null,
    min: Math.min(...ends),
    max: Math.max(...ends),
    unit: image.unit,
  };
}

// ---------------------------------------------------------------- per annotation

/**
 * The measurement of one annotation on its frame (measure.py `measure`):
 * line, arrow, polyline, open freehand: length; angle: degrees (null for a zero arm);
 * rectangle, ellipse, closed freehand: area and, with pixels, ROI statistics;
 * point, text: nothing.
 */
export function measure(a: Measurable, image: ImageInfo): Measurement {
  const cal = image.calibration;
  const pts = a.geometry.points;
  const p0 = pts[0];
  const p1 = pts[1];
  const out: Measurement = {};
  if ((a.kind === 'line' || a.kind === 'arrow') && p0 && p1) {
    out.length = lengthMm(p0, p1, cal);
    out.lengthUnit = lengthUnit(cal);
  } else if ((a.kind === 'polyline' || (a.kind === 'freehand' && !a.geometry.closed)) && pts.length >= 2) {
    out.length = polylineLength(pts, cal);
    out.lengthUnit = lengthUnit(cal);
  } else if (a.kind === 'angle' && p0 && p1 && pts[2]) {
    out.angleDeg = angleDeg(p0, p1, pts[2], cal);
  } else if ((a.kind === 'rectangle' || a.kind === 'ellipse') && p0 && p1) {
    out.area = a.kind === 'rectangle' ? rectangleArea(p0, p1, cal) : ellipseArea(p0, p1, cal);
    out.areaUnit = areaUnit(cal);
    if (image.pixels) out.stats = roiStats(image, a.kind, pts);
  } else if (a.kind === 'freehand' && pts.length >= 1) {
    out.area = polygonArea(pts, cal);
    out.areaUnit = areaUnit(cal);
    if (image.pixels) out.stats = roiStats(image, 'polygon', pts);
  } else {
    return out;
  }
  out.calibration = cal.source;
  return out;
}
