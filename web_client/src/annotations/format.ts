/**
 * Measurements as text, in the current language: the list's lines (message key and
 * arguments, re-translated when the language changes) and the short labels on the image.
 */
import { currentLang, t, type MsgArgs, type MsgKey } from '../i18n';
import { fromPixelSpacing, polylineLength, UNCALIBRATED, type Calibration, type Measurement } from './measure';
import { PHANTOM } from './phantom';
import type { Annotation } from './tools';

const DEMO_CALIBRATION = fromPixelSpacing(PHANTOM.pixelSpacing);
import { boxOf } from './geometry';

export interface Text {
  key: MsgKey;
  args: MsgArgs;
}

let formatter: { lang: string; one: Intl.NumberFormat; int: Intl.NumberFormat } | null = null;

function fmt(): { one: Intl.NumberFormat; int: Intl.NumberFormat } {
  const lang = currentLang();
  if (formatter?.lang !== lang) {
    formatter = {
      lang,
      one: new Intl.NumberFormat(lang, { maximumFractionDigits: 1, minimumFractionDigits: 1 }),
      int: new Intl.NumberFormat(lang, { maximumFractionDigits: 0 }),
    };
  }
  return formatter;
}

/** One decimal, in the current language. */
export const num = (v: number): string => fmt().one.format(v);

/** A pixel spacing in mm, as precise as it is stated. */
export const spacing = (v: number): string => new Intl.NumberFormat(currentLang(), { maximumFractionDigits: 6 }).format(v);

/** The unit of ROI values as shown ("HU" is "UH" in French). */
const unitText = (unit: string): string => (unit === 'HU' ? t('annotations.unit_hu') : unit);
const int = (v: number): string => fmt().int.format(v);
const orDash = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : num(v));

/**
 * The list's geometric measurement of `a` (length, angle, size and area), or null: in mm
 * on a calibrated image (`cal`, by default the demo image's), else in pixels.
 */
export function measureText(a: Annotation, m: Measurement, cal: Calibration = DEMO_CALIBRATION): Text | null {
  const pts = a.geometry.points;
  if (m.length !== undefined) {
    const px = polylineLength(pts, UNCALIBRATED);
    if (m.lengthUnit === 'px') return { key: 'annotations.measure_length_px', args: { px: num(px) } };
    return { key: 'annotations.measure_length', args: { px: num(px), mm: num(m.length) } };
  }
  if (m.angleDeg !== undefined) return { key: 'annotations.measure_angle', args: { deg: orDash(m.angleDeg) } };
  if (m.area !== undefined) {
    const inPx = m.areaUnit === 'px2';
    if (a.kind === 'freehand') return { key: inPx ? 'annotations.measure_area_px' : 'annotations.measure_area', args: { area: num(m.area) } };
    const b = boxOf(pts);
    const sx = inPx ? 1 : cal.columnSpacing;
    const sy = inPx ? 1 : cal.rowSpacing;
    const args = { w: num((b.x1 - b.x0) * sx), h: num((b.y1 - b.y0) * sy), area: num(m.area) };
    return { key: inPx ? 'annotations.measure_rect_px' : 'annotations.measure_rect', args };
  }
  const p = pts[0];
  if (a.kind === 'point' && p) return { key: 'annotations.measure_point', args: { x: num(p[0]), y: num(p[1]) } };
  return null;
}

/** The list's ROI statistics line, or null for shapes without statistics. */
export function statsText(m: Measurement): Text | null {
  const s = m.stats;
  if (!s) return null;
  if (s.nPixels === 0 || s.mean === null) return { key: 'annotations.measure_stats_empty', args: {} };
  return {
    key: 'annotations.measure_stats',
    args: { mean: num(s.mean), sd: orDash(s.sd), min: orDash(s.min), max: orDash(s.max), n: int(s.nPixels), unit: unitText(s.unit) },
  };
}

/** The label drawn next to a shape on the image: zero to two short lines. */
export function labelLines(a: Annotation, m: Measurement): string[] {
  if (a.kind === 'arrow' || a.kind === 'point' || a.kind === 'text') return [];
  if (m.length !== undefined) {
    return [m.lengthUnit === 'px' ? t('annotations.label_length_px', { px: num(m.length) }) : t('annotations.label_length', { mm: num(m.length) })];
  }
  if (m.angleDeg !== undefined) return m.angleDeg === null ? [] : [t('annotations.label_angle', { deg: num(m.angleDeg) })];
  if (m.area === undefined) return [];
  const lines = [m.areaUnit === 'px2' ? t('annotations.label_area_px', { area: num(m.area) }) : t('annotations.label_area', { area: num(m.area) })];
  const s = m.stats;
  if (s && s.mean !== null) lines.push(t('annotations.label_stats', { mean: num(s.mean), sd: orDash(s.sd), unit: unitText(s.unit) }));
  return lines;
}

const KIND_KEYS: Record<Annotation['kind'], MsgKey> = {
  arrow: 'annotations.kind_arrow',
  line: 'annotations.kind_line',
  polyline: 'annotations.kind_polyline',
  freehand: 'annotations.kind_freehand',
  ellipse: 'annotations.kind_ellipse',
  rectangle: 'annotations.kind_rectangle',
  angle: 'annotations.kind_angle',
  point: 'annotations.kind_point',
  text: 'annotations.kind_text',
};

/** The kind's name (a closed freehand stroke is a region). */
export function kindKey(a: Annotation): MsgKey {
  if (a.kind === 'freehand' && a.geometry.closed) return 'annotations.kind_region';
  return KIND_KEYS[a.kind] ?? 'annotations.kind_generic';
}
