/**
 * The drawing surface: the scene's image (the viewer's, or the demo phantom) under its zoom
 * and pan, with every annotation of the shared map, their measurements and the others'
 * pointers drawn over it. It redraws at the next animation frame, and only when something
 * changed (`schedule`).
 *
 * Pointer input draws with the current tool or, with the select tool, picks, moves and
 * reshapes an annotation; gestures.ts commits the shape while it changes, one undo step
 * per gesture.
 */
import { h } from '../dom';
import { bindAttrs, currentLang } from '../i18n';
import { Draft, GESTURES } from './draft';
import type { Editor } from './editor';
import { labelLines } from './format';
import { boxOf, handlesOf, hits, pick, pickHandle, translate } from './geometry';
import { Gestures } from './gestures';
import type { ImageInfo } from './measure';
import type { Presence } from './presence';
import {
  drawAnnotation,
  drawCloseTarget,
  drawHandles,
  drawLabel,
  drawPointer,
  drawSelectionBox,
  labelAnchor,
  labelWidth,
  measureTextBox,
} from './render';
import { mapping, type Mapping, type Scene, type SceneImage } from './scene';
import type { TextForm } from './textform';
import {
  clampPoint,
  createAnnotation,
  editAnnotation,
  measureAnnotation,
  newAnnotationId,
  type Annotation,
  type Point,
  type ShapeExtras,
  type ToolKind,
} from './tools';

/** Tolerances in CSS pixels (converted to image pixels at the current zoom). */
const PICK_TOLERANCE = 6;
const HANDLE_TOLERANCE = 8;
const CLOSE_TOLERANCE = 12;
const DRAG_THRESHOLD = 3;
const DOUBLE_CLICK_TOLERANCE = 4;

export interface CanvasDeps {
  /** The image drawn on, and how it is shown. */
  scene: Scene;
  editor: Editor;
  presence: Presence;
  textForm: TextForm;
  /** Own participant id, or null before `joined`. */
  self: () => string | null;
  /** The tool in effect (`select` for those who cannot draw). */
  tool: () => ToolKind;
  selected: () => string | null;
  select: (id: string | null) => void;
}

const distance = (a: Point, b: Point): number => Math.hypot(b[0] - a[0], b[1] - a[1]);

export class AnnotationCanvas {
  readonly el: HTMLCanvasElement;
  /** The canvas and the text form over it. */
  readonly stage: HTMLElement;
  private readonly ctx: CanvasRenderingContext2D | null;
  private frame = 0;
  private readonly gestures: Gestures;
  private cssWidth = 0;
  private cssHeight = 0;
  private hoverHandle = -1;
  /** Measurement labels per value (values are replaced, never changed) and language. */
  private readonly labels = new WeakMap<Annotation, { lang: string; info: ImageInfo; lines: string[]; width: number }>();
  /** Label sizes in CSS pixels, per value. */
  private readonly textSizes = new WeakMap<Annotation, { width: number; height: number }>();
  private readonly textSize = (a: Annotation): { width: number; height: number } => {
    let s = this.textSizes.get(a);
    if (!s && this.ctx) {
      s = measureTextBox(this.ctx, a, 1);
      this.textSizes.set(a, s);
    }
    const k = this.k;
    return s ? { width: s.width * k, height: s.height * k } : { width: 0, height: 0 };
  };

  constructor(private readonly deps: CanvasDeps) {
    this.el = h('canvas', {
      class: 'annotation-canvas',
      testid: 'annotation-canvas',
      attrs: { width: 512, height: 512, role: 'img', tabindex: 0 },
      i18nAttrs: { 'aria-label': 'annotations.image_label', 'aria-description': 'annotations.phantom_label' },
    });
    this.stage = h('div', { class: 'annotation-stage' }, this.el, deps.textForm.el);
    this.ctx = this.el.getContext('2d');
    this.gestures = new Gestures({ editor: deps.editor, select: deps.select, redraw: () => this.schedule() });
    this.el.addEventListener('pointerdown', (ev) => this.down(ev));
    this.el.addEventListener('pointermove', (ev) => this.moveTo(ev));
    this.el.addEventListener('pointerup', (ev) => this.up(ev));
    this.el.addEventListener('pointercancel', (ev) => this.pointerCancel(ev));
    this.el.addEventListener('pointerleave', () => this.deps.presence.setPointer(null));
    this.el.addEventListener('dblclick', (ev) => this.doubleClick(ev));
    new ResizeObserver((entries) => {
      for (const e of entries) this.resize(e.contentRect.width, e.contentRect.height);
    }).observe(this.el);
    this.schedule();
  }

  private get img(): SceneImage {
    return this.deps.scene.image();
  }

  /** The canvas size in CSS pixels (its layout size before the first resize). */
  size(): { width: number; height: number } {
    if (!this.cssWidth || !this.cssHeight) {
      const r = this.el.getBoundingClientRect();
      return { width: r.width || this.el.width, height: r.height || this.el.height };
    }
    return { width: this.cssWidth, height: this.cssHeight };
  }

  /** Image pixels to CSS pixels of the canvas. */
  private get map(): Mapping {
    const { width, height } = this.size();
    const img = this.img;
    return mapping(width, height, img.width, img.height, this.deps.scene.view());
  }

  /** Image pixels per CSS pixel. */
  private get k(): number {
    return 1 / this.map.scale;
  }

  /** The image changed: its description for assistive technology. */
  imageChanged(): void {
    const demo = this.img.demo;
    bindAttrs(this.el, demo ? { 'aria-label': 'annotations.image_label', 'aria-description': 'annotations.phantom_label' } : { 'aria-label': 'annotations.image_label_real' });
    if (!demo) this.el.removeAttribute('aria-description');
    this.schedule();
  }

  /** CSS position (in the stage) of an image point. */
  private toScreen(p: Point): [number, number] {
    const m = this.map;
    return [m.ox + p[0] * m.scale, m.oy + p[1] * m.scale];
  }

  /** Redraw at the next animation frame (coalesced). */
  schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** The cursor and the tool changed. */
  toolChanged(): void {
    this.settle();
    this.hoverHandle = -1;
    this.updateCursor(null);
    this.schedule();
  }

  /** Rights or the tool in effect changed: cursor and handles, without ending a gesture. */
  refresh(): void {
    if (!this.gestures.current) this.updateCursor(null);
    this.schedule();
  }

  /** Whether a shape is being drawn or edited. */
  get busy(): boolean {
    return this.gestures.current !== null;
  }

  /** Finish the gesture in progress as it is (before an undo, a tool change). */
  settle(): void {
    this.gestures.finish();
  }

  /** Drop the gesture without touching the map (the document was replaced, rights lost). */
  abort(): void {
    this.gestures.abort();
    if (this.deps.textForm.open) this.deps.textForm.close(null);
    this.schedule();
  }

  /** Keys for the shape being drawn; true when handled. */
  handleKey(ev: KeyboardEvent): boolean {
    const g = this.gestures.current;
    if (ev.key === 'Escape') {
      if (g) return this.gestures.cancel();
      if (this.deps.selected() !== null) {
        this.deps.select(null);
        return true;
      }
      return false;
    }
    if (g?.type !== 'draw' || g.draft.gesture !== 'clicks') return false;
    if (ev.key === 'Enter') {
      this.gestures.finish();
      return true;
    }
    if (ev.key === 'Backspace') {
      if (!g.draft.removeLast()) return this.gestures.cancel();
      this.gestures.changed();
      return true;
    }
    return false;
  }

  /** Move the selected annotation by (dx, dy) image pixels: one undo step. */
  nudgeSelected(dx: number, dy: number): boolean {
    const ed = this.deps.editor;
    const a = ed.get(this.deps.selected());
    if (!a || !ed.canEdit(a) || this.busy) return false;
    ed.boundary();
    ed.put(editAnnotation(a, { points: translate(a.geometry.points, dx, dy).map(clampPoint) }));
    ed.boundary();
    return true;
  }

  /** Change a text label's text and size (asked over the image). */
  async editText(id: string): Promise<void> {
    const ed = this.deps.editor;
    const a = ed.get(id);
    const anchor = a?.geometry.points[0];
    if (!a || a.kind !== 'text' || !anchor || !ed.canEdit(a)) return;
    const [left, top] = this.toScreen(anchor);
    const value = await this.deps.textForm.ask(left, top, { text: a.geometry.text ?? '', fontSize: a.style.fontSize ?? 14 }, 'annotations.text_save');
    const cur = ed.get(id);
    if (!value || !cur || !ed.canEdit(cur)) return;
    ed.boundary();
    ed.put(editAnnotation(cur, { text: value.text, fontSize: value.fontSize }));
    ed.boundary();
  }

  // ------------------------------------------------------------ pointer

  private toImage(ev: { clientX: number; clientY: number }): Point {
    return this.clientToImage(ev.clientX, ev.clientY);
  }

  /** Image pixel coordinates of a client position. */
  clientToImage(clientX: number, clientY: number): [number, number] {
    const r = this.el.getBoundingClientRect();
    const m = this.map;
    return [(clientX - r.left - m.ox) / m.scale, (clientY - r.top - m.oy) / m.scale];
  }

  private capture(ev: PointerEvent): void {
    try {
      this.el.setPointerCapture(ev.pointerId);
    } catch {
      // synthetic events without an active pointer
    }
  }

  private down(ev: PointerEvent): void {
    if (ev.button !== 0) return;
    this.el.focus({ preventScroll: true });
    const p = this.toImage(ev);
    const g = this.gestures.current;
    if (g?.type === 'draw' && g.draft.gesture === 'clicks') {
      ev.preventDefault();
      if (g.draft.addPoint(p, DOUBLE_CLICK_TOLERANCE * this.k)) {
        if (g.draft.complete) this.gestures.finish();
        else this.gestures.changed();
      }
      return;
    }
    if (g) return; // a second pointer during a drag
    const tool = this.deps.tool();
    if (tool === 'select') {
      this.selectDown(ev, p);
      return;
    }
    const self = this.deps.self();
    if (!self) return;
    ev.preventDefault();
    const gesture = GESTURES[tool];
    if (tool === 'point' || tool === 'text') {
      void this.place(tool, self, p);
      return;
    }
    this.deps.select(null);
    this.gestures.start({ type: 'draw', draft: new Draft(tool, self, p, this.img.anchor), pointerId: gesture === 'drag' ? ev.pointerId : null, committed: false });
    if (gesture === 'drag') this.capture(ev);
  }

  private selectDown(ev: PointerEvent, p: Point): void {
    const ed = this.deps.editor;
    const k = this.k;
    const sel = ed.get(this.deps.selected());
    if (sel && ed.canEdit(sel)) {
      const index = pickHandle(sel, p, HANDLE_TOLERANCE * k);
      if (index >= 0) {
        ev.preventDefault();
        this.gestures.start({ type: 'handle', original: sel, index, to: p, pointerId: ev.pointerId, committed: false });
        this.capture(ev);
        return;
      }
    }
    const tol = PICK_TOLERANCE * k;
    // The selected shape keeps the pointer where it overlaps others, so it can be dragged.
    const target = sel && hits(sel, p, tol, this.textSize) ? sel : pick(ed.items(), p, tol, this.textSize);
    this.deps.select(target?.id ?? null);
    if (target && ed.canEdit(target)) {
      ev.preventDefault();
      this.gestures.start({ type: 'move', original: target, from: p, to: p, pointerId: ev.pointerId, started: false, committed: false });
      this.capture(ev);
    }
    this.updateCursor(p);
  }

  /** Point and text: one click places the annotation (a label asks for its text first). */
  private async place(kind: 'point' | 'text', self: string, p: Point): Promise<void> {
    const ed = this.deps.editor;
    const at = clampPoint(p);
    const image = this.img.key;
    let extras: ShapeExtras = { anchor: this.img.anchor };
    if (kind === 'text') {
      const [left, top] = this.toScreen(at);
      const value = await this.deps.textForm.ask(left, top);
      if (!value || this.deps.self() !== self || !ed.canEdit({ author: self }) || this.img.key !== image) return;
      extras = { ...extras, text: value.text, fontSize: value.fontSize };
      this.el.focus({ preventScroll: true });
    }
    const a = createAnnotation(newAnnotationId(), kind, self, Date.now(), [at], extras);
    ed.boundary();
    ed.put(a);
    ed.boundary();
    this.deps.select(a.id);
  }

  private moveTo(ev: PointerEvent): void {
    const p = this.toImage(ev);
    const img = this.img;
    const inImage = p[0] >= 0 && p[1] >= 0 && p[0] <= img.width && p[1] <= img.height;
    this.deps.presence.setPointer(inImage ? p : null);
    const g = this.gestures.current;
    if (!g) {
      if (this.deps.tool() === 'select') this.updateCursor(p);
      return;
    }
    switch (g.type) {
      case 'draw': {
        let changed = false;
        if (g.draft.kind === 'freehand') {
          // Every sample the browser coalesced into this event: a smoother stroke.
          for (const e of ev.getCoalescedEvents?.() ?? []) changed = g.draft.moveTo(this.toImage(e)) || changed;
        }
        if (g.draft.moveTo(p) || changed) this.gestures.changed();
        break;
      }
      case 'move':
        if (ev.pointerId !== g.pointerId) return;
        g.to = p;
        if (!g.started && distance(g.from, p) >= DRAG_THRESHOLD * this.k) g.started = true;
        if (g.started) this.gestures.changed();
        break;
      case 'handle':
        if (ev.pointerId !== g.pointerId) return;
        g.to = p;
        this.gestures.changed();
        break;
    }
  }

  private up(ev: PointerEvent): void {
    const g = this.gestures.current;
    if (!g) return;
    if (g.type === 'draw') {
      if (g.draft.gesture !== 'drag' || ev.pointerId !== g.pointerId) return;
      if (g.draft.kind !== 'freehand') g.draft.moveTo(this.toImage(ev));
      g.draft.setClosed(g.draft.closesWithin(CLOSE_TOLERANCE * this.k));
      this.gestures.finish();
      return;
    }
    if (ev.pointerId !== g.pointerId) return;
    if (g.type === 'move' && !g.started) this.gestures.cancel(); // a click: the selection is all
    else this.gestures.finish();
  }

  private pointerCancel(ev: PointerEvent): void {
    if (this.gestures.current?.pointerId === ev.pointerId) this.gestures.cancel();
  }

  private doubleClick(ev: MouseEvent): void {
    const g = this.gestures.current;
    if (g?.type === 'draw' && g.draft.kind === 'polyline') {
      ev.preventDefault();
      this.gestures.finish();
      return;
    }
    if (!g && this.deps.tool() === 'select') {
      const sel = this.deps.editor.get(this.deps.selected());
      if (sel?.kind === 'text') void this.editText(sel.id);
    }
  }

  private updateCursor(p: Point | null): void {
    const tool = this.deps.tool();
    let cursor = 'crosshair';
    let handle = -1;
    if (tool === 'select') {
      cursor = 'default';
      const ed = this.deps.editor;
      const sel = ed.get(this.deps.selected());
      if (p && sel && ed.canEdit(sel)) handle = pickHandle(sel, p, HANDLE_TOLERANCE * this.k);
      if (handle >= 0) cursor = 'pointer';
      else if (p) {
        const hit = pick(ed.items(), p, PICK_TOLERANCE * this.k, this.textSize);
        if (hit) cursor = ed.canEdit(hit) ? 'move' : 'pointer';
      }
    }
    if (this.el.style.cursor !== cursor) this.el.style.cursor = cursor;
    if (handle !== this.hoverHandle) {
      this.hoverHandle = handle;
      this.schedule();
    }
  }

  // ------------------------------------------------------------ render

  private resize(width: number, height: number): void {
    if (!(width > 0 && height > 0)) return;
    this.cssWidth = width;
    this.cssHeight = height;
    const dpr = window.devicePixelRatio || 1;
    const bw = Math.max(1, Math.round(width * dpr));
    const bh = Math.max(1, Math.round(height * dpr));
    if (this.el.width !== bw || this.el.height !== bh) {
      this.el.width = bw;
      this.el.height = bh;
    }
    this.schedule();
  }

  private render(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const img = this.img;
    const m = this.map;
    const k = 1 / m.scale;
    const { width } = this.size();
    const dpr = this.el.width / (width || this.el.width);
    const bounds = { width: img.width, height: img.height };
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.el.width, this.el.height);
    ctx.setTransform(dpr * m.scale, 0, 0, dpr * m.scale, dpr * m.ox, dpr * m.oy);
    const picture = this.deps.scene.bitmap();
    if (picture) {
      // Magnified pixels stay square (a radiologist wants to see them), smoothed below 1:1.
      ctx.imageSmoothingEnabled = m.scale * dpr < 2;
      ctx.drawImage(picture, 0, 0, img.width, img.height);
    }
    const live = this.gestures.liveValue();
    const selId = this.deps.selected();
    const items = this.deps.editor.items();
    for (const a of items) if (a.id !== live?.id) drawAnnotation(ctx, a, k, a.id === selId);
    if (live) drawAnnotation(ctx, live, k, live.id === selId);
    for (const a of items) if (a.id !== live?.id) this.drawMeasurement(ctx, a, k, bounds);
    if (live) this.drawMeasurement(ctx, live, k, bounds);
    this.drawSelection(ctx, live, selId, k);
    const g = this.gestures.current;
    if (g?.type === 'draw' && g.draft.kind === 'freehand' && g.draft.fixedCount > 3) {
      drawCloseTarget(ctx, g.draft.start, CLOSE_TOLERANCE * k, g.draft.closesWithin(CLOSE_TOLERANCE * k), k);
    }
    for (const p of this.deps.presence.pointers()) drawPointer(ctx, p, k, bounds);
  }

  private drawMeasurement(ctx: CanvasRenderingContext2D, a: Annotation, k: number, bounds: { width: number; height: number }): void {
    const lang = currentLang();
    const info = this.img.info;
    let label = this.labels.get(a);
    if (label?.lang !== lang || label.info !== info) {
      const lines = labelLines(a, measureAnnotation(a, info));
      label = { lang, info, lines, width: lines.length ? labelWidth(ctx, lines) : 0 };
      this.labels.set(a, label);
    }
    const at = label.lines.length ? labelAnchor(a, k) : null;
    if (at) drawLabel(ctx, label.lines, at, k, bounds, a.style.color, label.width);
  }

  private drawSelection(ctx: CanvasRenderingContext2D, live: Annotation | null, selId: string | null, k: number): void {
    if (selId === null) return;
    const a = live?.id === selId ? live : this.deps.editor.get(selId);
    if (!a) return;
    const editable = this.deps.editor.canEdit(a) && this.deps.tool() === 'select';
    const handles = editable ? handlesOf(a) : [];
    if (handles.length) {
      const g = this.gestures.current;
      drawHandles(ctx, handles, k, g?.type === 'handle' ? g.index : this.hoverHandle);
      return;
    }
    if (a.kind === 'text' || a.kind === 'freehand' || a.kind === 'point') {
      const anchor = a.geometry.points[0];
      if (a.kind === 'text' && anchor) {
        const s = this.textSize(a);
        drawSelectionBox(ctx, anchor[0], anchor[1], s.width, s.height, k);
      } else {
        const b = boxOf(a.geometry.points);
        const pad = a.kind === 'point' ? 10 * k : 0;
        drawSelectionBox(ctx, b.x0 - pad, b.y0 - pad, b.x1 - b.x0 + 2 * pad, b.y1 - b.y0 + 2 * pad, k);
      }
    }
  }
}
