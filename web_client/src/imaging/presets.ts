/**
 * Window/level in the browser: presets, and stored values to grey levels through a lookup
 * table built per window (one entry per stored value the frame holds), so a drag costs one
 * table of at most 65,536 entries and one pass over the pixels, never a server round trip.
 *
 * The window is in rescaled units (Modality LUT output: HU for CT), applied as DICOM's
 * LINEAR function (PS3.3 C.11.2.1.2.1); MONOCHROME1 is inverted after it.
 */
import type { MsgKey } from '../i18n';

export interface Preset {
  id: string;
  key: MsgKey;
  center: number;
  width: number;
}

/** CT presets (HU). */
export const PRESETS: readonly Preset[] = [
  { id: 'lung', key: 'imaging.preset_lung', center: -600, width: 1500 },
  { id: 'mediastinum', key: 'imaging.preset_mediastinum', center: 50, width: 350 },
  { id: 'bone', key: 'imaging.preset_bone', center: 400, width: 1800 },
  { id: 'brain', key: 'imaging.preset_brain', center: 40, width: 80 },
  { id: 'abdomen', key: 'imaging.preset_abdomen', center: 40, width: 400 },
];

export type GreyPixels = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

/** Smallest and largest stored value. */
export function range(px: GreyPixels): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < px.length; i++) {
    const v = px[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return px.length ? [lo, hi] : [0, 0];
}

/** Opaque grey as one little-endian RGBA word. */
const grey = (g: number): number => (0xff000000 | (g << 16) | (g << 8) | g) >>> 0;

/** DICOM LINEAR window: the grey level (0..255) of a rescaled value. */
export function linear(value: number, center: number, width: number): number {
  const w = Math.max(1, width);
  const lo = center - 0.5 - (w - 1) / 2;
  const hi = center - 0.5 + (w - 1) / 2;
  if (value <= lo) return 0;
  if (value > hi) return 255;
  return Math.round(((value - (center - 0.5)) / (w - 1) + 0.5) * 255);
}

const MAX_LUT = 1 << 16;
let lutScratch = new Uint32Array(0);

/**
 * Write the frame's grey levels into `out` (RGBA words, one per pixel). `lo`..`hi` is the
 * frame's stored range; frames with a wider range (32-bit data) are mapped per pixel.
 */
export function renderGrey(
  px: GreyPixels,
  lo: number,
  hi: number,
  slope: number,
  intercept: number,
  center: number,
  width: number,
  invert: boolean,
  out: Uint32Array,
): void {
  const n = Math.min(px.length, out.length);
  const span = hi - lo + 1;
  if (span > MAX_LUT) {
    for (let i = 0; i < n; i++) {
      const g = linear(px[i]! * slope + intercept, center, width);
      out[i] = grey(invert ? 255 - g : g);
    }
    return;
  }
  if (lutScratch.length < span) lutScratch = new Uint32Array(Math.max(span, 4096));
  const lut = lutScratch;
  for (let v = 0; v < span; v++) {
    const g = linear((v + lo) * slope + intercept, center, width);
    lut[v] = grey(invert ? 255 - g : g);
  }
  for (let i = 0; i < n; i++) out[i] = lut[px[i]! - lo]!;
}

/** Interleaved RGB (8 bits per sample) as RGBA words. */
export function renderRgb(px: Uint8Array | Uint16Array, out: Uint32Array): void {
  const n = Math.min(out.length, Math.floor(px.length / 3));
  const shift = px instanceof Uint16Array ? 8 : 0;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    out[i] = (0xff000000 | ((px[j + 2]! >> shift) << 16) | ((px[j + 1]! >> shift) << 8) | (px[j]! >> shift)) >>> 0;
  }
}

/** A default window from the stored range (images that state none). */
export function windowFromRange(lo: number, hi: number, slope: number, intercept: number): [number, number] {
  const a = lo * slope + intercept;
  const b = hi * slope + intercept;
  const min = Math.min(a, b);
  const max = Math.max(a, b);
  return [(min + max) / 2, Math.max(1, max - min + 1)];
}
