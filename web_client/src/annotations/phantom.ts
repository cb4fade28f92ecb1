/**
 * The demo image: a synthetic CT-like phantom generated in the client, shown while the room
 * has no images of its own (annotations/scene.ts).
 *
 * Stored values are an Int16Array (rows × columns, row-major) with a stated Modality LUT:
 * Rescale Slope 1, Rescale Intercept -1024, so HU = stored - 1024. Air background, a
 * soft-tissue body disc and three inserts (fat, bone, water), each with a little
 * deterministic noise so that ROI statistics look like real ones. It is shown through a
 * window/level (W 400 / L 40, a soft-tissue window); ROI statistics come from the stored
 * values (measure.ts), never from the screen.
 */
import { fromPixelSpacing, type ImageInfo } from './measure';

export interface Disc {
  /** Centre, image pixel coordinates. */
  cx: number;
  cy: number;
  r: number;
  hu: number;
}

export const PHANTOM = {
  rows: 512,
  columns: 512,
  slope: 1,
  intercept: -1024,
  /** mm per pixel, [row spacing, column spacing] (a fixed demo Pixel Spacing). */
  pixelSpacing: [0.5, 0.5] as const,
  airHu: -1000,
  body: { cx: 256, cy: 256, r: 200, hu: 40 } satisfies Disc,
  inserts: [
    { cx: 160, cy: 230, r: 40, hu: -100 }, // fat
    { cx: 352, cy: 230, r: 40, hu: 700 }, // bone
    { cx: 256, cy: 350, r: 44, hu: 0 }, // water
  ] satisfies Disc[],
  /** SD of the added noise, HU. */
  noiseHu: 6,
  window: { width: 400, level: 40 },
} as const;

/** mulberry32: a tiny seeded PRNG, so every client generates the same image. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function inside(d: Disc, r: number, c: number): boolean {
  const dx = c + 0.5 - d.cx;
  const dy = r + 0.5 - d.cy;
  return dx * dx + dy * dy <= d.r * d.r;
}

function generate(): Int16Array {
  const { rows, columns, intercept, slope, body, inserts, noiseHu, airHu } = PHANTOM;
  const out = new Int16Array(rows * columns);
  const rand = prng(0x5eed);
  // Triangular noise: the sum of 2 uniforms has variance 1/6, so scale by sqrt(6) for SD 1.
  const scale = Math.sqrt(6) * noiseHu;
  const noise = (): number => (rand() + rand() - 1) * scale;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      let hu: number = airHu;
      if (inside(body, r, c)) {
        hu = body.hu;
        for (const d of inserts) if (inside(d, r, c)) hu = d.hu;
      }
      out[r * columns + c] = Math.round((hu + noise() - intercept) / slope);
    }
  }
  return out;
}

let cached: Int16Array | null = null;

/** The phantom's stored values (generated once). */
export function phantomPixels(): Int16Array {
  cached ??= generate();
  return cached;
}

let info: ImageInfo | null = null;

/** What measure.ts needs to know of the demo frame (one object: measurements cache by it). */
export function phantomImage(): ImageInfo {
  info ??= {
    calibration: fromPixelSpacing(PHANTOM.pixelSpacing),
    rows: PHANTOM.rows,
    columns: PHANTOM.columns,
    pixels: phantomPixels(),
    slope: PHANTOM.slope,
    intercept: PHANTOM.intercept,
    unit: 'HU',
  };
  return info;
}

/** The phantom through a linear window (DICOM PS3.3 C.11.2.1.2 "LINEAR"), as a canvas. */
export function renderPhantom(width = PHANTOM.window.width, level = PHANTOM.window.level): HTMLCanvasElement {
  const { rows, columns, slope, intercept } = PHANTOM;
  const canvas = document.createElement('canvas');
  canvas.width = columns;
  canvas.height = rows;
  const ctx = canvas.getContext('2d');
  if (!ctx) return canvas;
  const img = ctx.createImageData(columns, rows);
  const px = phantomPixels();
  const lo = level - 0.5 - (width - 1) / 2;
  const span = width - 1;
  const data = img.data;
  for (let i = 0; i < px.length; i++) {
    const hu = (px[i] ?? 0) * slope + intercept;
    const g = hu <= lo ? 0 : hu > lo + span ? 255 : Math.round(((hu - lo) / span) * 255);
    const o = i * 4;
    data[o] = g;
    data[o + 1] = g;
    data[o + 2] = g;
    data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
