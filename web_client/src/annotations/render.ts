/**
 * Drawing on the 2D context, in image pixel coordinates (the caller sets the transform).
 * `k` is image pixels per CSS pixel: stroke widths, font sizes and handle sizes are CSS
 * pixels (annotations/SCHEMA.md), so they stay the same on screen whatever the zoom.
 */
import { boxOf } from './geometry';
import type { RemotePointer } from './presence';
import type { Annotation, Point } from './tools';

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const LABEL_PX = 12;
const TEXT_LINE = 1.25;
const HALO = 'rgba(255, 255, 255, 0.55)';

export function textLines(a: Annotation): string[] {
  return (a.geometry.text ?? '').split(/\r\n|\r|\n/);
}

/** A text annotation's label size, in image pixels. */
export function measureTextBox(ctx: CanvasRenderingContext2D, a: Annotation, k: number): { width: number; height: number } {
  const size = (a.style.fontSize ?? 14) * k;
  ctx.font = `${size}px ${FONT}`;
  let width = 0;
  const lines = textLines(a);
  for (const line of lines) width = Math.max(width, ctx.measureText(line).width);
  return { width, height: lines.length * size * TEXT_LINE };
}

function traceArrowHead(ctx: CanvasRenderingContext2D, tail: Point, head: Point, size: number): void {
  const ang = Math.atan2(head[1] - tail[1], head[0] - tail[0]);
  for (const side of [-1, 1]) {
    ctx.moveTo(head[0], head[1]);
    ctx.lineTo(head[0] - size * Math.cos(ang + side * 0.45), head[1] - size * Math.sin(ang + side * 0.45));
  }
}

function traceAngleArc(ctx: CanvasRenderingContext2D, pts: readonly Point[], k: number): void {
  const [a, v, b] = pts;
  if (!a || !v || !b) return;
  const la = Math.hypot(a[0] - v[0], a[1] - v[1]);
  const lb = Math.hypot(b[0] - v[0], b[1] - v[1]);
  const r = Math.min(22 * k, 0.4 * Math.min(la, lb));
  if (!(r > 0)) return;
  const t0 = Math.atan2(a[1] - v[1], a[0] - v[0]);
  const t1 = Math.atan2(b[1] - v[1], b[0] - v[0]);
  let d = t1 - t0;
  while (d > Math.PI) d -= 2 * Math.PI;
  while (d < -Math.PI) d += 2 * Math.PI;
  ctx.moveTo(v[0] + r * Math.cos(t0), v[1] + r * Math.sin(t0));
  ctx.arc(v[0], v[1], r, t0, t0 + d, d < 0);
}

/** The outline of a shape as the current path (text: nothing). */
function tracePath(ctx: CanvasRenderingContext2D, a: Annotation, k: number): void {
  const pts = a.geometry.points;
  const first = pts[0];
  if (!first) return;
  ctx.beginPath();
  switch (a.kind) {
    case 'rectangle': {
      const b = boxOf(pts);
      ctx.rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
      return;
    }
    case 'ellipse': {
      const b = boxOf(pts);
      ctx.ellipse((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2, (b.x1 - b.x0) / 2, (b.y1 - b.y0) / 2, 0, 0, 2 * Math.PI);
      return;
    }
    case 'point': {
      const r = 5 * k;
      ctx.moveTo(first[0] + r, first[1]);
      ctx.arc(first[0], first[1], r, 0, 2 * Math.PI);
      ctx.moveTo(first[0] - 2 * r, first[1]);
      ctx.lineTo(first[0] - r, first[1]);
      ctx.moveTo(first[0] + r, first[1]);
      ctx.lineTo(first[0] + 2 * r, first[1]);
      ctx.moveTo(first[0], first[1] - 2 * r);
      ctx.lineTo(first[0], first[1] - r);
      ctx.moveTo(first[0], first[1] + r);
      ctx.lineTo(first[0], first[1] + 2 * r);
      return;
    }
    case 'text':
      return;
    default:
      ctx.moveTo(first[0], first[1]);
      for (let i = 1; i < pts.length; i++) {
        const p = pts[i] as Point;
        ctx.lineTo(p[0], p[1]);
      }
      if (a.kind === 'freehand' && a.geometry.closed) ctx.closePath();
      if (a.kind === 'arrow' && pts[1]) traceArrowHead(ctx, first, pts[1], Math.max(10, 4 * a.style.width) * k);
      if (a.kind === 'angle') traceAngleArc(ctx, pts, k);
  }
}

function drawText(ctx: CanvasRenderingContext2D, a: Annotation, k: number, selected: boolean): void {
  const anchor = a.geometry.points[0];
  if (!anchor) return;
  const size = (a.style.fontSize ?? 14) * k;
  ctx.font = `${size}px ${FONT}`;
  ctx.textBaseline = 'top';
  ctx.lineJoin = 'round';
  ctx.lineWidth = Math.max(2, size / 6);
  ctx.strokeStyle = selected ? 'rgba(255,255,255,0.9)' : 'rgba(0,0,0,0.75)';
  ctx.fillStyle = a.style.color;
  textLines(a).forEach((line, i) => {
    const y = anchor[1] + i * size * TEXT_LINE;
    ctx.strokeText(line, anchor[0], y);
    ctx.fillText(line, anchor[0], y);
  });
}

/** One annotation; `selected` adds a halo. */
export function drawAnnotation(ctx: CanvasRenderingContext2D, a: Annotation, k: number, selected: boolean): void {
  ctx.save();
  if (a.kind === 'text') {
    drawText(ctx, a, k, selected);
    ctx.restore();
    return;
  }
  tracePath(ctx, a, k);
  ctx.lineJoin = 'round';
  ctx.lineCap = 'round';
  const width = a.style.width * k;
  if (a.style.fill) {
    ctx.globalAlpha = 0.2;
    ctx.fillStyle = a.style.color;
    ctx.fill('evenodd');
    ctx.globalAlpha = 1;
  }
  if (selected) {
    ctx.strokeStyle = HALO;
    ctx.lineWidth = width + 5 * k;
    ctx.stroke();
  }
  ctx.strokeStyle = a.style.color;
  ctx.lineWidth = width;
  ctx.stroke();
  ctx.restore();
}

/** A dashed box around a selected label or stroke without handles. */
export function drawSelectionBox(ctx: CanvasRenderingContext2D, x: number, y: number, w: number, h: number, k: number): void {
  ctx.save();
  ctx.setLineDash([4 * k, 3 * k]);
  ctx.lineWidth = 1.5 * k;
  ctx.strokeStyle = '#ffffff';
  const pad = 3 * k;
  ctx.strokeRect(x - pad, y - pad, w + 2 * pad, h + 2 * pad);
  ctx.restore();
}

/** Square handles at the given points. */
export function drawHandles(ctx: CanvasRenderingContext2D, points: readonly Point[], k: number, active = -1): void {
  ctx.save();
  const s = 7 * k;
  ctx.lineWidth = 1.5 * k;
  points.forEach((p, i) => {
    ctx.fillStyle = i === active ? '#ffd400' : '#ffffff';
    ctx.strokeStyle = '#000000';
    ctx.fillRect(p[0] - s / 2, p[1] - s / 2, s, s);
    ctx.strokeRect(p[0] - s / 2, p[1] - s / 2, s, s);
  });
  ctx.restore();
}

/** The width of a label's lines, in CSS pixels (to cache: it does not depend on the zoom). */
export function labelWidth(ctx: CanvasRenderingContext2D, lines: readonly string[]): number {
  ctx.font = `600 ${LABEL_PX}px ${FONT}`;
  let w = 0;
  for (const line of lines) w = Math.max(w, ctx.measureText(line).width);
  return w;
}

/** A short measurement label: white text on a dark box, kept inside the image. */
export function drawLabel(
  ctx: CanvasRenderingContext2D,
  lines: readonly string[],
  at: Point,
  k: number,
  bounds: { width: number; height: number },
  color?: string,
  width: number = labelWidth(ctx, lines),
): void {
  if (!lines.length) return;
  ctx.save();
  const size = LABEL_PX * k;
  ctx.font = `600 ${size}px ${FONT}`;
  ctx.textBaseline = 'top';
  const pad = 3 * k;
  const w = width * k;
  const h = lines.length * size * TEXT_LINE;
  const x = Math.max(0, Math.min(at[0], bounds.width - w - 2 * pad));
  const y = Math.max(0, Math.min(at[1], bounds.height - h - 2 * pad));
  ctx.fillStyle = 'rgba(0, 0, 0, 0.68)';
  ctx.fillRect(x, y, w + 2 * pad, h + 2 * pad);
  if (color) {
    ctx.fillStyle = color;
    ctx.fillRect(x, y, 2 * k, h + 2 * pad);
  }
  ctx.fillStyle = '#ffffff';
  lines.forEach((line, i) => ctx.fillText(line, x + pad + (color ? k : 0), y + pad + i * size * TEXT_LINE));
  ctx.restore();
}

/** Where a shape's label goes: by its end, vertex or box. */
export function labelAnchor(a: Annotation, k: number): Point | null {
  const pts = a.geometry.points;
  const off = 8 * k;
  if (a.kind === 'angle' && pts[1]) return [pts[1][0] + off, pts[1][1] + off];
  if (a.kind === 'rectangle' || a.kind === 'ellipse' || (a.kind === 'freehand' && a.geometry.closed)) {
    const b = boxOf(pts);
    return [b.x1 + off, b.y0];
  }
  const last = pts[pts.length - 1];
  return last ? [last[0] + off, last[1] - off - LABEL_PX * k] : null;
}

/** Another participant's pointer: an arrow cursor in their colour with their name. */
export function drawPointer(ctx: CanvasRenderingContext2D, p: RemotePointer, k: number, bounds: { width: number; height: number }): void {
  ctx.save();
  ctx.translate(p.x, p.y);
  ctx.scale(k, k);
  ctx.beginPath();
  ctx.moveTo(0, 0);
  ctx.lineTo(0, 16);
  ctx.lineTo(4.5, 12);
  ctx.lineTo(8, 19);
  ctx.lineTo(10.5, 18);
  ctx.lineTo(7, 11);
  ctx.lineTo(12, 11);
  ctx.closePath();
  ctx.fillStyle = p.color;
  ctx.strokeStyle = '#ffffff';
  ctx.lineWidth = 1.5;
  ctx.lineJoin = 'round';
  ctx.fill();
  ctx.stroke();
  ctx.restore();
  if (p.name) drawLabel(ctx, [p.name], [p.x + 12 * k, p.y + 16 * k], k, bounds, p.color);
}

/** Freehand: the ring around the start that closes the stroke when it ends inside it. */
export function drawCloseTarget(ctx: CanvasRenderingContext2D, at: Point, radius: number, active: boolean, k: number): void {
  ctx.save();
  ctx.beginPath();
  ctx.arc(at[0], at[1], radius, 0, 2 * Math.PI);
  ctx.setLineDash([3 * k, 3 * k]);
  ctx.lineWidth = 1.5 * k;
  ctx.strokeStyle = active ? '#ffd400' : 'rgba(255,255,255,0.7)';
  ctx.stroke();
  ctx.restore();
}
