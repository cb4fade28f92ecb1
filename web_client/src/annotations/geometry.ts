/**
 * Picking and reshaping annotations on the image: hit tests, the handles of a selected
 * shape, moving it. Everything is in image pixel coordinates; tolerances are passed in
 * image pixels by the caller (who knows the zoom).
 */
import type { Annotation, Point } from './tools';

/** Polylines with more points than this are moved whole, not reshaped point by point. */
const MAX_POINT_HANDLES = 200;

export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export function boxOf(points: readonly Point[]): Box {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of points) {
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return { x0, y0, x1, y1 };
}

function distToSegment(p: Point, a: Point, b: Point): number {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2));
  return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
}

function nearPath(p: Point, pts: readonly Point[], closed: boolean, tol: number): boolean {
  for (let i = 1; i < pts.length; i++) if (distToSegment(p, pts[i - 1] as Point, pts[i] as Point) <= tol) return true;
  if (closed && pts.length > 2) return distToSegment(p, pts[pts.length - 1] as Point, pts[0] as Point) <= tol;
  return pts.length === 1 && Math.hypot(p[0] - (pts[0] as Point)[0], p[1] - (pts[0] as Point)[1]) <= tol;
}

function insidePolygon(p: Point, pts: readonly Point[]): boolean {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i] as Point;
    const [xj, yj] = pts[j] as Point;
    if (yi > p[1] !== yj > p[1] && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** The label box of a text annotation, from its anchor (top-left) and its measured size. */
export type TextSize = (a: Annotation) => { width: number; height: number };

/** Whether `p` picks annotation `a` (regions also from inside). */
export function hits(a: Annotation, p: Point, tol: number, textSize: TextSize): boolean {
  const pts = a.geometry.points;
  const [x, y] = p;
  switch (a.kind) {
    case 'rectangle': {
      const b = boxOf(pts);
      return x >= b.x0 - tol && x <= b.x1 + tol && y >= b.y0 - tol && y <= b.y1 + tol;
    }
    case 'ellipse': {
      const b = boxOf(pts);
      const rx = (b.x1 - b.x0) / 2 + tol;
      const ry = (b.y1 - b.y0) / 2 + tol;
      const u = (x - (b.x0 + b.x1) / 2) / rx;
      const v = (y - (b.y0 + b.y1) / 2) / ry;
      return u * u + v * v <= 1;
    }
    case 'freehand':
      return nearPath(p, pts, a.geometry.closed === true, tol) || (a.geometry.closed === true && insidePolygon(p, pts));
    case 'point':
      return nearPath(p, pts, false, tol * 1.5);
    case 'text': {
      const anchor = pts[0];
      if (!anchor) return false;
      const { width, height } = textSize(a);
      return x >= anchor[0] - tol && x <= anchor[0] + width + tol && y >= anchor[1] - tol && y <= anchor[1] + height + tol;
    }
    default:
      return nearPath(p, pts, false, tol);
  }
}

/** The topmost annotation under `p` (the list is drawn bottom to top). */
export function pick(items: readonly Annotation[], p: Point, tol: number, textSize: TextSize): Annotation | null {
  for (let i = items.length - 1; i >= 0; i--) {
    const a = items[i];
    if (a && hits(a, p, tol, textSize)) return a;
  }
  return null;
}

/**
 * The handles of a shape: its points, or the four corners of a rectangle's or ellipse's box
 * (clockwise from top-left). Freehand strokes, points and labels are only moved whole.
 */
export function handlesOf(a: Annotation): Point[] {
  const pts = a.geometry.points;
  switch (a.kind) {
    case 'rectangle':
    case 'ellipse': {
      const b = boxOf(pts);
      return [
        [b.x0, b.y0],
        [b.x1, b.y0],
        [b.x1, b.y1],
        [b.x0, b.y1],
      ];
    }
    case 'freehand':
    case 'point':
    case 'text':
      return [];
    case 'polyline':
      return pts.length <= MAX_POINT_HANDLES ? pts : [];
    default:
      return pts;
  }
}

/** The index of the handle under `p`, or -1. */
export function pickHandle(a: Annotation, p: Point, tol: number): number {
  const hs = handlesOf(a);
  let best = -1;
  let bestD = tol;
  hs.forEach((h, i) => {
    const d = Math.hypot(p[0] - h[0], p[1] - h[1]);
    if (d <= bestD) {
      best = i;
      bestD = d;
    }
  });
  return best;
}

/** The points after dragging handle `index` to `p`. */
export function dragHandle(a: Annotation, index: number, p: Point): Point[] {
  if (a.kind === 'rectangle' || a.kind === 'ellipse') {
    const corners = handlesOf(a);
    const opposite = corners[(index + 2) % 4] ?? p;
    return [opposite, p];
  }
  return a.geometry.points.map((q, i) => (i === index ? p : q));
}

/** The points moved by (dx, dy). */
export function translate(points: readonly Point[], dx: number, dy: number): Point[] {
  return points.map((q) => [q[0] + dx, q[1] + dy] as Point);
}
