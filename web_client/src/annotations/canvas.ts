/**
 * The drawing surface: a fixed placeholder image (no DICOM viewer yet) with every
 * annotation of the shared map drawn over it. Re-rendered on every change of the map, at
 * most once per animation frame. Pointer events draw with the current tool: the shape is
 * committed as a whole-value replacement on every step (throttled to one per frame), so
 * the others see it while it is drawn.
 */
import { h } from '../dom';
import type { AnnotationDoc } from './doc';
import { LOCAL } from './doc';
import { DEMO_IMAGE, Stroke, isAnnotation, measure, type Annotation, type Point, type ToolKind } from './tools';

export interface CanvasDeps {
  doc: AnnotationDoc;
  /** Own participant id, or null before `joined`. */
  self: () => string | null;
  /** The current tool, or null when drawing is not allowed. */
  tool: () => ToolKind | null;
  /** Called before and after a stroke (undo grouping). */
  onStrokeBoundary: () => void;
}

function placeholderImage(): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = DEMO_IMAGE.width;
  c.height = DEMO_IMAGE.height;
  const ctx = c.getContext('2d');
  if (!ctx) return c;
  const g = ctx.createLinearGradient(0, 0, c.width, c.height);
  g.addColorStop(0, '#111111');
  g.addColorStop(1, '#bbbbbb');
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, c.width, c.height);
  const r = ctx.createRadialGradient(c.width * 0.55, c.height * 0.45, 10, c.width * 0.55, c.height * 0.45, 120);
  r.addColorStop(0, 'rgba(255,255,255,0.35)');
  r.addColorStop(1, 'rgba(255,255,255,0)');
  ctx.fillStyle = r;
  ctx.fillRect(0, 0, c.width, c.height);
  return c;
}

export class AnnotationCanvas {
  readonly el: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D | null;
  private readonly background = placeholderImage();
  private frame = 0;
  private stroke: Stroke | null = null;
  private commitFrame = 0;

  constructor(private readonly deps: CanvasDeps) {
    this.el = h('canvas', {
      class: 'annotation-canvas',
      testid: 'annotation-canvas',
      attrs: {
        width: DEMO_IMAGE.width,
        height: DEMO_IMAGE.height,
        role: 'img',
        style: 'display:block;width:100%;max-width:512px;aspect-ratio:1/1;touch-action:none;cursor:crosshair;background:#000',
      },
      i18nAttrs: { 'aria-label': 'annotations.image_label' },
    });
    this.ctx = this.el.getContext('2d');
    this.el.addEventListener('pointerdown', (ev) => this.down(ev));
    this.el.addEventListener('pointermove', (ev) => this.moveTo(ev));
    this.el.addEventListener('pointerup', (ev) => this.up(ev));
    this.el.addEventListener('pointercancel', (ev) => this.up(ev));
    this.schedule();
  }

  /** Redraw at the next animation frame (coalesced). */
  schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Abandon the stroke in progress (the document was replaced, drawing was disabled). */
  cancelStroke(): void {
    if (this.commitFrame) cancelAnimationFrame(this.commitFrame);
    this.commitFrame = 0;
    this.stroke = null;
  }

  // ------------------------------------------------------------ pointer

  private toImage(ev: PointerEvent): Point {
    const r = this.el.getBoundingClientRect();
    const sx = DEMO_IMAGE.width / (r.width || DEMO_IMAGE.width);
    const sy = DEMO_IMAGE.height / (r.height || DEMO_IMAGE.height);
    return [(ev.clientX - r.left) * sx, (ev.clientY - r.top) * sy];
  }

  private down(ev: PointerEvent): void {
    if (ev.button !== 0) return;
    const tool = this.deps.tool();
    const self = this.deps.self();
    if (!tool || !self) return;
    ev.preventDefault();
    try {
      this.el.setPointerCapture(ev.pointerId);
    } catch {
      // synthetic events without an active pointer
    }
    this.deps.onStrokeBoundary();
    this.stroke = new Stroke(tool, self, this.toImage(ev));
    this.commit();
  }

  private moveTo(ev: PointerEvent): void {
    if (!this.stroke) return;
    if (!this.deps.tool()) {
      this.cancelStroke();
      return;
    }
    if (this.stroke.move(this.toImage(ev)) && !this.commitFrame) {
      this.commitFrame = requestAnimationFrame(() => {
        this.commitFrame = 0;
        this.commit();
      });
    }
  }

  private up(ev: PointerEvent): void {
    const stroke = this.stroke;
    if (!stroke) return;
    if (ev.type === 'pointerup') stroke.move(this.toImage(ev));
    if (this.commitFrame) cancelAnimationFrame(this.commitFrame);
    this.commitFrame = 0;
    this.stroke = null;
    const { doc } = this.deps;
    if (stroke.meaningful) this.commit(stroke);
    else doc.doc.transact(() => doc.map.delete(stroke.id), LOCAL);
    this.deps.onStrokeBoundary();
  }

  private commit(stroke: Stroke | null = this.stroke): void {
    if (!stroke) return;
    const { doc } = this.deps;
    doc.doc.transact(() => doc.map.set(stroke.id, stroke.toJSON()), LOCAL);
  }

  // ------------------------------------------------------------ render

  private render(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.clearRect(0, 0, this.el.width, this.el.height);
    ctx.drawImage(this.background, 0, 0);
    const r = this.el.getBoundingClientRect();
    const scale = r.width > 0 ? this.el.width / r.width : 1; // screen px -> canvas px
    const items: Annotation[] = [];
    this.deps.doc.map.forEach((v) => {
      if (isAnnotation(v)) items.push(v);
    });
    items.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
    for (const a of items) this.draw(ctx, a, scale);
  }

  private draw(ctx: CanvasRenderingContext2D, a: Annotation, scale: number): void {
    const pts = a.geometry.points;
    const first = pts[0];
    if (!first) return;
    ctx.save();
    ctx.strokeStyle = a.style.color;
    ctx.fillStyle = a.style.color;
    ctx.lineWidth = a.style.width * scale;
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    ctx.beginPath();
    if (a.kind === 'rectangle' && pts[1]) {
      const [p, q] = [first, pts[1]];
      ctx.rect(Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.abs(q[0] - p[0]), Math.abs(q[1] - p[1]));
    } else {
      ctx.moveTo(first[0], first[1]);
      for (const p of pts.slice(1)) ctx.lineTo(p[0], p[1]);
      if (a.geometry.closed) ctx.closePath();
    }
    ctx.stroke();
    if (a.kind === 'line' && pts[1]) {
      const m = measure(a);
      const label = `${(m.lengthMm ?? 0).toFixed(1)} mm`;
      ctx.font = `${12 * scale}px system-ui, sans-serif`;
      ctx.lineWidth = 3 * scale;
      ctx.strokeStyle = 'rgba(0,0,0,0.7)';
      const [x, y] = [pts[1][0] + 6 * scale, pts[1][1] - 6 * scale];
      ctx.strokeText(label, x, y);
      ctx.fillStyle = '#ffffff';
      ctx.fillText(label, x, y);
    }
    ctx.restore();
  }
}
