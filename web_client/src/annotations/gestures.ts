/**
 * The gesture in progress on the image: a shape being drawn (a Draft), or an annotation
 * being moved or reshaped by a handle. Its shape is recomputed at most once per change for
 * drawing, committed to the shared map as a whole value at most every COMMIT_INTERVAL_MS
 * (so the others see it live) and once at the end. One gesture is one undo step.
 */
import type { Draft } from './draft';
import type { Editor } from './editor';
import { dragHandle, translate } from './geometry';
import { Throttle } from './throttle';
import { clampPoint, editAnnotation, type Annotation, type Point } from './tools';

export const COMMIT_INTERVAL_MS = 50;

export type Gesture =
  | { type: 'draw'; draft: Draft; pointerId: number | null; committed: boolean }
  | { type: 'move'; original: Annotation; from: Point; to: Point; pointerId: number; started: boolean; committed: boolean }
  | { type: 'handle'; original: Annotation; index: number; to: Point; pointerId: number; committed: boolean };

export interface GestureDeps {
  editor: Editor;
  select: (id: string | null) => void;
  /** Something to redraw. */
  redraw: () => void;
}

export class Gestures {
  private g: Gesture | null = null;
  private live: Annotation | null = null;
  private liveDirty = false;
  private readonly commits = new Throttle(COMMIT_INTERVAL_MS, () => this.commitLive());

  constructor(private readonly deps: GestureDeps) {}

  get current(): Gesture | null {
    return this.g;
  }

  /** Start a gesture: a new undo step (nothing is committed before the shape changes). */
  start(g: Gesture): void {
    this.deps.editor.boundary();
    this.g = g;
    this.liveDirty = true;
    this.deps.redraw();
  }

  /** The gesture's shape changed (the caller updated it). */
  changed(): void {
    if (!this.g) return;
    this.liveDirty = true;
    this.commits.request();
    this.deps.redraw();
  }

  /** The shape to draw this frame (in place of the map's value with the same id). */
  liveValue(): Annotation | null {
    const g = this.g;
    if (!g) return null;
    if (this.liveDirty || !this.live) {
      this.live = g.type === 'draw' ? g.draft.view() : (this.committable(g) ?? g.original);
      this.liveDirty = false;
    }
    return this.live;
  }

  /** End the gesture and commit its final shape (a new one is then selected). */
  finish(): void {
    const g = this.end();
    if (!g) return;
    const ed = this.deps.editor;
    const value = this.stillThere(g) ? this.committable(g, true) : null;
    if (value) ed.put(value);
    else if (g.type === 'draw' && g.committed) ed.remove(g.draft.id);
    ed.boundary();
    if (value && g.type === 'draw') this.deps.select(value.id);
  }

  /** Escape: a new shape disappears, an edited one goes back to where it was. */
  cancel(): boolean {
    const g = this.end();
    if (!g) return false;
    const ed = this.deps.editor;
    if (g.committed) {
      if (g.type === 'draw') ed.remove(g.draft.id);
      else if (this.stillThere(g)) ed.put(g.original);
    }
    ed.boundary();
    return true;
  }

  /** Drop the gesture without touching the map (the document was replaced, rights lost). */
  abort(): void {
    this.end();
  }

  private end(): Gesture | null {
    const g = this.g;
    this.commits.cancel();
    this.g = null;
    this.live = null;
    if (g) this.deps.redraw();
    return g;
  }

  /** The gesture's shape as it would be committed now (null: nothing to commit yet). */
  private committable(g: Gesture, final = false): Annotation | null {
    switch (g.type) {
      case 'draw':
        return g.draft.snapshot(final);
      case 'move':
        if (!g.started) return null;
        return editAnnotation(g.original, {
          points: translate(g.original.geometry.points, g.to[0] - g.from[0], g.to[1] - g.from[1]).map(clampPoint),
        });
      case 'handle':
        return editAnnotation(g.original, { points: dragHandle(g.original, g.index, clampPoint(g.to)) });
    }
  }

  /** An edited annotation that someone deleted meanwhile is not brought back. */
  private stillThere(g: Gesture): boolean {
    return g.type === 'draw' || this.deps.editor.get(g.original.id) !== null;
  }

  private commitLive(): void {
    const g = this.g;
    if (!g) return;
    if (!this.stillThere(g)) {
      this.abort();
      return;
    }
    const value = this.committable(g);
    if (!value) return;
    this.deps.editor.put(value);
    g.committed = true;
  }
}
