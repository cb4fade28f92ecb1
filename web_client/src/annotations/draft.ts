/**
 * The annotation being drawn. Three gestures:
 * - drag (arrow, line, rectangle, ellipse, freehand): press, drag, release;
 * - clicks (polyline, angle): one click per point, a rubber band to the pointer; an angle
 *   ends on its third click (arm end, vertex, arm end), a polyline on a double-click or Enter;
 * - click (point, text): one click places it.
 * The draft owns its points and mutates them in place while it is drawn; `view()` is the
 * cheap shape drawn every frame, `snapshot()` the deep copy committed to the shared map.
 */
import { createAnnotation, MAX_POINTS, newAnnotationId, clampPoint, type Anchor, type Annotation, type Kind, type Point, type ShapeExtras } from './tools';

export type Gesture = 'drag' | 'clicks' | 'click';

export const GESTURES: Record<Kind, Gesture> = {
  arrow: 'drag',
  line: 'drag',
  rectangle: 'drag',
  ellipse: 'drag',
  freehand: 'drag',
  polyline: 'clicks',
  angle: 'clicks',
  point: 'click',
  text: 'click',
};

/** Freehand: least distance between kept samples, in image pixels. */
const FREEHAND_MIN_STEP = 1.5;

const dist = (a: Point, b: Point): number => Math.hypot(b[0] - a[0], b[1] - a[1]);

export class Draft {
  readonly id = newAnnotationId();
  readonly created = Date.now();
  /** Points fixed so far (drag: the start, plus the path for freehand). */
  private readonly fixed: Point[];
  /** Where the pointer is (drag: the current end; clicks: the rubber band). */
  private hover: Point | null = null;
  private closed = false;

  constructor(
    readonly kind: Kind,
    readonly author: string,
    start: Point,
    /** The image it is drawn on (default: the demo image). */
    readonly anchor?: Anchor,
  ) {
    this.fixed = [clampPoint(start)];
  }

  get gesture(): Gesture {
    return GESTURES[this.kind];
  }

  /** The points the shape has now (fixed points plus the pointer where it counts). */
  get points(): Point[] {
    const pts = this.fixed.slice();
    if (this.kind === 'freehand') return pts.length === 1 ? [pts[0] as Point, pts[0] as Point] : pts;
    if (this.hover && this.kind !== 'point' && this.kind !== 'text') pts.push(this.hover);
    return pts;
  }

  get start(): Point {
    return this.fixed[0] as Point;
  }

  /** The last fixed point (a polyline's or angle's last click). */
  get lastFixed(): Point {
    return this.fixed[this.fixed.length - 1] as Point;
  }

  get fixedCount(): number {
    return this.fixed.length;
  }

  /** Drag and rubber band: the pointer moved to `p`; false when nothing changed. */
  moveTo(p: Point): boolean {
    const q = clampPoint(p);
    if (this.kind === 'freehand') {
      const last = this.lastFixed;
      if (dist(last, q) < FREEHAND_MIN_STEP || this.fixed.length >= MAX_POINTS) return false;
      this.fixed.push(q);
      return true;
    }
    if (this.hover && this.hover[0] === q[0] && this.hover[1] === q[1]) return false;
    this.hover = q;
    return true;
  }

  /** Clicks gesture: fix a point. Too close to the last one (a double-click) is ignored. */
  addPoint(p: Point, minStep: number): boolean {
    const q = clampPoint(p);
    if (dist(this.lastFixed, q) < minStep || this.fixed.length >= MAX_POINTS) return false;
    this.fixed.push(q);
    this.hover = null;
    return true;
  }

  /** Polyline: drop the last fixed point (not the first). */
  removeLast(): boolean {
    if (this.fixed.length <= 1) return false;
    this.fixed.pop();
    return true;
  }

  /** An angle has all three points fixed. */
  get complete(): boolean {
    return this.kind === 'angle' && this.fixed.length >= 3;
  }

  /** Freehand: whether the stroke ends near its start (it will be closed: a region). */
  closesWithin(tolerance: number): boolean {
    if (this.kind !== 'freehand' || this.fixed.length < 4) return false;
    let length = 0;
    for (let i = 1; i < this.fixed.length; i++) length += dist(this.fixed[i - 1] as Point, this.fixed[i] as Point);
    return length > 4 * tolerance && dist(this.start, this.lastFixed) <= tolerance;
  }

  setClosed(on: boolean): void {
    this.closed = on;
  }

  /** Enough of a shape to be drawn, committed and kept. */
  get valid(): boolean {
    return this.validFor(this.points);
  }

  private validFor(pts: Point[]): boolean {
    const a = pts[0];
    const b = pts[pts.length - 1];
    if (!a || !b) return false;
    switch (this.kind) {
      case 'point':
      case 'text':
        return true;
      case 'freehand':
        return this.fixed.length >= 2;
      case 'rectangle':
      case 'ellipse':
        return Math.abs(b[0] - a[0]) >= 1 && Math.abs(b[1] - a[1]) >= 1;
      case 'angle':
        return pts.length === 3 && dist(a, pts[1] as Point) > 0 && dist(pts[1] as Point, b) > 0;
      case 'polyline':
        return pts.length >= 2 && pts.some((p) => dist(a, p) >= 2);
      default:
        return dist(a, b) >= 2;
    }
  }

  /** The shape as drawn this frame (shares the draft's point tuples, which never change). */
  view(): Annotation {
    const a = createAnnotation(this.id, this.kind, this.author, this.created, [], this.extras({}));
    a.geometry.points = this.points;
    return a;
  }

  /**
   * The value to commit, or null while it is not a valid shape yet. `final`: a finished
   * polyline or angle drops the rubber band.
   */
  snapshot(final = false, extras: { text?: string; fontSize?: number } = {}): Annotation | null {
    const pts = final && this.gesture === 'clicks' ? this.fixed.slice() : this.points;
    if (!this.validFor(pts)) return null;
    return createAnnotation(this.id, this.kind, this.author, this.created, pts, this.extras(extras));
  }

  private extras(extras: { text?: string; fontSize?: number }): ShapeExtras {
    return { ...extras, closed: this.closed, ...(this.anchor ? { anchor: this.anchor } : {}) };
  }
}
