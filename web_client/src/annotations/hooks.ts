/**
 * Test hooks, installed only when the page sets `window.__consultdTestHooks = true` before
 * it loads (the browser tests do, with an init script): what the shared document and the
 * others' pointers hold, and a raw delete that bypasses the UI's rights (to check that the
 * server refuses it).
 */
import type { Measurement } from './measure';
import type { RemotePointer } from './presence';
import type { Annotation } from './tools';

/** The demo frame as measured: stored values (Int16, little-endian, base64) and rescale. */
export interface PhantomInfo {
  rows: number;
  columns: number;
  /** [row spacing, column spacing], mm. */
  pixelSpacing: readonly [number, number];
  slope: number;
  intercept: number;
  pixels: string;
}

export interface AnnotationTestHooks {
  /** The shared map as plain JSON. */
  annotations(): Record<string, Annotation>;
  /** The others' pointers on this image, from awareness. */
  pointers(): RemotePointer[];
  /** Whether the document is synced with the server. */
  synced(): boolean;
  /** Delete from the shared map as if the UI allowed it (origin LOCAL). */
  rawDelete(id: string): void;
  /** What the browser measures for each annotation (to compare with annotations/measure.py). */
  measurements(): Record<string, Measurement>;
  phantom(): PhantomInfo;
  /** The image the layer is on: its document key, anchor, size and calibration. */
  image(): {
    key: string;
    anchor: Annotation['anchor'];
    demo: boolean;
    width: number;
    height: number;
    calibration: string;
    pixelSpacing: [number, number];
    pixelsLoaded: boolean;
  };
}

declare global {
  interface Window {
    __consultdTestHooks?: boolean;
    __consultdAnnotations?: AnnotationTestHooks;
  }
}

export function installTestHooks(hooks: AnnotationTestHooks): void {
  if (window.__consultdTestHooks === true) window.__consultdAnnotations = hooks;
}
