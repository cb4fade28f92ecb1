/**
 * The annotation JSON (annotations/SCHEMA.md), the drawing tools that produce it and its
 * measurements. Annotations are anchored to the viewer's image (scene.ts): its study,
 * series and instance UIDs and frame; a room without images draws on the demo phantom.
 */
import { measure as measureOn, type ImageInfo, type Measurement } from './measure';
import { PHANTOM, phantomImage } from './phantom';

export type Point = [number, number];

export const KINDS = ['arrow', 'line', 'polyline', 'freehand', 'ellipse', 'rectangle', 'angle', 'point', 'text'] as const;
export type Kind = (typeof KINDS)[number];
/** A drawing tool is a kind; `select` picks, moves and reshapes. */
export type ToolKind = Kind | 'select';

export interface Style {
  color: string;
  /** Stroke width in CSS pixels. */
  width: number;
  /** rectangle, ellipse, freehand only. */
  fill?: boolean;
  /** text only, CSS pixels. */
  fontSize?: number;
}

export interface Geometry {
  points: Point[];
  /** freehand only: a closed stroke is a region. */
  closed?: boolean;
  /** text only. */
  text?: string;
}

export interface Annotation {
  id: string;
  author: string;
  created: number;
  updated: number;
  kind: Kind;
  style: Style;
  anchor: Anchor;
  geometry: Geometry;
}

export interface Anchor {
  study_uid: string;
  series_uid: string;
  instance_uid: string;
  frame: number;
}

/** The demo image: its document key, DICOM anchor, size and calibration. */
export const DEMO_IMAGE = {
  key: 'demo:1',
  uid: '1.2.826.0.1.3680043.8.498.1',
  frame: 1,
  width: PHANTOM.columns,
  height: PHANTOM.rows,
  /** mm per pixel (the phantom's fixed demo Pixel Spacing, rows = columns). */
  pixelSpacing: PHANTOM.pixelSpacing[1],
} as const;

export const STROKE_WIDTH = 2;
export const POINT_WIDTH = 2;
export const FONT_SIZES = [12, 14, 18, 24, 32] as const;
export const DEFAULT_FONT_SIZE = 18;
/** A stroke is resent whole while it is drawn: keep it well under the 64 KiB message limit. */
export const MAX_POINTS = 2000;
/** Schema limit on a text label, in code points. */
export const MAX_TEXT_CHARS = 2000;

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
const LIMIT = 1e6;

/** A point as stored: within the schema's ±1e6, rounded to 1/100 pixel. */
export function clampPoint(p: readonly [number, number]): Point {
  return [round2(Math.max(-LIMIT, Math.min(LIMIT, p[0]))), round2(Math.max(-LIMIT, Math.min(LIMIT, p[1])))];
}

/** Control characters (other than tab, LF, CR), DEL and lone surrogates are refused. */
const BAD_TEXT = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The label as the schema accepts it (trimmed, no control characters, at most 2000 code points). */
export function cleanText(raw: string): string {
  const cps = Array.from(raw.replace(BAD_TEXT, '').trim());
  return cps.slice(0, MAX_TEXT_CHARS).join('');
}

/** Extras some kinds carry. */
export interface ShapeExtras {
  closed?: boolean;
  text?: string;
  fontSize?: number;
  /** The image it is drawn on (default: the demo image). */
  anchor?: Anchor;
}

const DEMO_ANCHOR: Anchor = { study_uid: DEMO_IMAGE.uid, series_uid: DEMO_IMAGE.uid, instance_uid: DEMO_IMAGE.uid, frame: DEMO_IMAGE.frame };

/** A new annotation of `kind` by `author` (only the fields its kind allows). */
export function createAnnotation(id: string, kind: Kind, author: string, created: number, points: readonly Point[], extras: ShapeExtras = {}): Annotation {
  const a: Annotation = {
    id,
    author,
    created,
    updated: Math.max(created, Date.now()),
    kind,
    style: { color: colorFor(author), width: kind === 'point' ? POINT_WIDTH : STROKE_WIDTH },
    anchor: { ...(extras.anchor ?? DEMO_ANCHOR) },
    geometry: { points: points.map((p) => [p[0], p[1]] as Point) },
  };
  if (kind === 'rectangle' || kind === 'ellipse' || kind === 'freehand') a.style.fill = false;
  if (kind === 'freehand') a.geometry.closed = extras.closed ?? false;
  if (kind === 'text') {
    a.style.fontSize = extras.fontSize ?? DEFAULT_FONT_SIZE;
    a.geometry.text = extras.text ?? '';
  }
  return a;
}

/**
 * An edit: the whole value replaced (last writer wins), `updated` bumped, `author` and
 * `created` unchanged.
 */
export function editAnnotation(a: Annotation, change: { points?: readonly Point[] } & ShapeExtras): Annotation {
  const geometry: Geometry = { points: (change.points ?? a.geometry.points).map((p) => [p[0], p[1]] as Point) };
  if (a.kind === 'freehand') geometry.closed = change.closed ?? a.geometry.closed ?? false;
  if (a.kind === 'text') geometry.text = change.text ?? a.geometry.text ?? '';
  const style: Style = { ...a.style };
  if (a.kind === 'text' && change.fontSize !== undefined) style.fontSize = change.fontSize;
  return {
    ...a,
    style,
    anchor: { ...a.anchor },
    geometry,
    updated: Math.max(Date.now(), a.updated + 1, a.created),
  };
}

function isPoint(p: unknown): p is Point {
  return Array.isArray(p) && p.length === 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]);
}

/** A value of the shared map that can be drawn (the server has validated it). */
export function isAnnotation(v: unknown): v is Annotation {
  if (typeof v !== 'object' || v === null) return false;
  const a = v as Partial<Annotation>;
  return (
    typeof a.id === 'string' &&
    typeof a.author === 'string' &&
    typeof a.created === 'number' &&
    typeof a.kind === 'string' &&
    (KINDS as readonly string[]).includes(a.kind) &&
    typeof a.style?.color === 'string' &&
    Array.isArray(a.geometry?.points) &&
    a.geometry.points.length > 0 &&
    a.geometry.points.every(isPoint)
  );
}

/** Whether the kind is a region (area and ROI statistics). */
export function isRegion(a: Pick<Annotation, 'kind' | 'geometry'>): boolean {
  return a.kind === 'rectangle' || a.kind === 'ellipse' || (a.kind === 'freehand' && a.geometry.closed === true);
}

const caches = new WeakMap<ImageInfo, WeakMap<Annotation, Measurement>>();

/**
 * Measured on the image's stored values with its calibration (measure.ts), never from the
 * screen; by default on the demo phantom. Cached per value and image: map values are
 * replaced whole, never mutated, and an image's info is replaced when its pixels arrive.
 */
export function measureAnnotation(a: Annotation, image: ImageInfo = phantomImage()): Measurement {
  let cache = caches.get(image);
  if (!cache) {
    cache = new WeakMap();
    caches.set(image, cache);
  }
  let m = cache.get(a);
  if (!m) {
    m = measureOn(a, image);
    cache.set(a, m);
  }
  return m;
}
