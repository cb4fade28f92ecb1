/**
 * Drawing tools and the annotation JSON they produce (annotations/SCHEMA.md), plus the
 * measurements shown in the list. There is no DICOM viewer yet: every annotation is
 * anchored to one demo image with a fixed, stated calibration.
 */
export type Point = [number, number];
export type ToolKind = 'line' | 'rectangle' | 'freehand';

export interface Annotation {
  id: string;
  author: string;
  created: number;
  updated: number;
  kind: string;
  style: { color: string; width: number; fill?: boolean };
  anchor: { study_uid: string; series_uid: string; instance_uid: string; frame: number };
  geometry: { points: Point[]; closed?: boolean };
}

/** The demo image: its document key, DICOM anchor, size and calibration. */
export const DEMO_IMAGE = {
  key: 'demo:1',
  uid: '1.2.826.0.1.3680043.8.498.1',
  frame: 1,
  width: 512,
  height: 512,
  /** mm per pixel (a fixed demo Pixel Spacing, rows = columns). */
  pixelSpacing: 0.5,
} as const;

export const STROKE_WIDTH = 2;
/** A freehand stroke is resent whole while it is drawn: keep it well under 64 KiB. */
export const FREEHAND_MAX_POINTS = 2000;
const FREEHAND_MIN_STEP = 1.5;

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#00a3a3', '#f032e6', '#9a6324'];

/** A stable colour per author (participant id). */
export function colorFor(author: string): string {
  let h = 2166136261;
  for (let i = 0; i < author.length; i++) {
    h ^= author.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return PALETTE[(h >>> 0) % PALETTE.length] ?? '#e6194b';
}

export function newAnnotationId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return 'a' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

function clampPoint(p: Point): Point {
  const lim = 1e6;
  return [round2(Math.max(-lim, Math.min(lim, p[0]))), round2(Math.max(-lim, Math.min(lim, p[1])))];
}

/** The annotation being drawn, as it is committed on every step. */
export class Stroke {
  readonly id = newAnnotationId();
  readonly created = Date.now();
  private points: Point[];

  constructor(
    readonly kind: ToolKind,
    readonly author: string,
    start: Point,
  ) {
    const p = clampPoint(start);
    this.points = [p, [p[0], p[1]]];
  }

  /** Move the pointer to `p`; false when nothing changed. */
  move(p: Point): boolean {
    const q = clampPoint(p);
    if (this.kind === 'freehand') {
      const last = this.points[this.points.length - 1] ?? q;
      if (Math.hypot(q[0] - last[0], q[1] - last[1]) < FREEHAND_MIN_STEP) return false;
      if (this.points.length >= FREEHAND_MAX_POINTS) return false;
      // The start duplicates its first point until the pointer moves.
      if (this.points.length === 2 && samePoint(this.points[0], this.points[1])) this.points[1] = q;
      else this.points.push(q);
      return true;
    }
    this.points = [this.points[0] ?? q, q];
    return true;
  }

  /** Whether the drag was long enough to be kept. */
  get meaningful(): boolean {
    const [a, b] = [this.points[0], this.points[this.points.length - 1]];
    if (!a || !b) return false;
    if (this.kind === 'freehand') return this.points.length > 2 || !samePoint(a, b);
    return Math.hypot(b[0] - a[0], b[1] - a[1]) >= 2;
  }

  toJSON(): Annotation {
    const uid = DEMO_IMAGE.uid;
    const a: Annotation = {
      id: this.id,
      author: this.author,
      created: this.created,
      updated: Math.max(this.created, Date.now()),
      kind: this.kind,
      style: { color: colorFor(this.author), width: STROKE_WIDTH },
      anchor: { study_uid: uid, series_uid: uid, instance_uid: uid, frame: DEMO_IMAGE.frame },
      geometry: { points: this.points.map((p) => [p[0], p[1]] as Point) },
    };
    if (this.kind === 'rectangle' || this.kind === 'freehand') a.style.fill = false;
    if (this.kind === 'freehand') a.geometry.closed = false;
    return a;
  }
}

function samePoint(a: Point | undefined, b: Point | undefined): boolean {
  return !!a && !!b && a[0] === b[0] && a[1] === b[1];
}

export interface Measurement {
  /** Length in image pixels (line, freehand path). */
  lengthPx?: number;
  lengthMm?: number;
  widthMm?: number;
  heightMm?: number;
  areaMm2?: number;
}

/** Derived from the image geometry and the demo Pixel Spacing, never from the screen. */
export function measure(a: Annotation): Measurement {
  const pts = a.geometry?.points ?? [];
  const mm = DEMO_IMAGE.pixelSpacing;
  if (a.kind === 'line' || a.kind === 'freehand' || a.kind === 'polyline') {
    let px = 0;
    for (let i = 1; i < pts.length; i++) {
      const p = pts[i - 1];
      const q = pts[i];
      if (p && q) px += Math.hypot(q[0] - p[0], q[1] - p[1]);
    }
    return { lengthPx: px, lengthMm: px * mm };
  }
  if (a.kind === 'rectangle' && pts.length === 2 && pts[0] && pts[1]) {
    const w = Math.abs(pts[1][0] - pts[0][0]) * mm;
    const hgt = Math.abs(pts[1][1] - pts[0][1]) * mm;
    return { widthMm: w, heightMm: hgt, areaMm2: w * hgt };
  }
  return {};
}

export function isAnnotation(v: unknown): v is Annotation {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Annotation).kind === 'string' &&
    Array.isArray((v as Annotation).geometry?.points)
  );
}
