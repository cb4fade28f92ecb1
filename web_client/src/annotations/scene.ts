/**
 * What the annotation layer draws on: the image shown, how it is shown (zoom and pan) and
 * what it measures with. The room's viewer (imaging/viewer.ts) provides the real image; the
 * demo phantom (phantom.ts) is the scene of a room without images.
 *
 * Coordinates: annotations are in image pixels (annotations/SCHEMA.md). The viewport maps
 * them to CSS pixels: the whole image fits the viewport at zoom 1, and the image point at
 * the viewport's centre is (width / 2 - panX, height / 2 - panY), so the same view shows
 * the same part of the image on screens of any size.
 */
import type { ImageInfo } from './measure';
import { PHANTOM, phantomImage, renderPhantom } from './phantom';
import { DEMO_IMAGE, type Anchor } from './tools';

export type { Anchor };

export type CalibrationNote =
  | { kind: 'demo'; mm: number }
  | { kind: 'pixel'; row: number; column: number }
  | { kind: 'imager'; row: number; column: number }
  | { kind: 'none' };

export interface SceneImage {
  /** The annotation document of this image (docs/protocol.md `y`: `doc`). */
  readonly key: string;
  readonly anchor: Anchor;
  /** Columns and rows. */
  readonly width: number;
  readonly height: number;
  /** Calibration, stored values (null until loaded, or for colour) and rescale. */
  readonly info: ImageInfo;
  readonly calibration: CalibrationNote;
  /** The demo phantom (no image in the room yet). */
  readonly demo: boolean;
}

export interface ViewTransform {
  zoom: number;
  panX: number;
  panY: number;
}

export type SceneChange = 'image' | 'pixels' | 'view';

/** The drawing surface, handed to the scene so that it can add its own input (viewer). */
export interface Surface {
  readonly canvas: HTMLCanvasElement;
  /** The positioned box around the canvas (overlays go here). */
  readonly stage: HTMLElement;
  /** Where keyboard shortcuts are listened to (after the annotation layer's own). */
  readonly keys: HTMLElement;
  /** Image pixel coordinates of a client (page) position. */
  toImage(clientX: number, clientY: number): [number, number];
  /** The canvas size in CSS pixels. */
  size(): { width: number; height: number };
}

export interface Scene {
  image(): SceneImage;
  /** The picture at image size (width × height), or null while it loads. */
  bitmap(): CanvasImageSource | null;
  view(): ViewTransform;
  onChange(cb: (what: SceneChange) => void): () => void;
  attach?(surface: Surface): void;
  /** Controls placed above and below the image (the viewer's toolbar and stack slider). */
  readonly around?: { above: HTMLElement; below: HTMLElement };
}

const DEMO_UID = DEMO_IMAGE.uid;

export const DEMO_SCENE_IMAGE: SceneImage = {
  key: DEMO_IMAGE.key,
  anchor: { study_uid: DEMO_UID, series_uid: DEMO_UID, instance_uid: DEMO_UID, frame: DEMO_IMAGE.frame },
  width: PHANTOM.columns,
  height: PHANTOM.rows,
  get info(): ImageInfo {
    return phantomImage();
  },
  calibration: { kind: 'demo', mm: PHANTOM.pixelSpacing[1] },
  demo: true,
};

/** The demo phantom, fitted, not zoomable. */
export class PhantomScene implements Scene {
  private picture: HTMLCanvasElement | null = null;

  image(): SceneImage {
    return DEMO_SCENE_IMAGE;
  }

  bitmap(): CanvasImageSource {
    this.picture ??= renderPhantom();
    return this.picture;
  }

  view(): ViewTransform {
    return { zoom: 1, panX: 0, panY: 0 };
  }

  onChange(): () => void {
    return () => undefined;
  }
}

/** The viewport mapping of an image in a canvas of `cw` × `ch` CSS pixels. */
export interface Mapping {
  /** CSS pixels per image pixel. */
  scale: number;
  /** CSS position of image point (0, 0). */
  ox: number;
  oy: number;
}

export function mapping(cw: number, ch: number, iw: number, ih: number, v: ViewTransform): Mapping {
  const fit = Math.min(cw / (iw || 1), ch / (ih || 1)) || 1;
  const scale = fit * v.zoom;
  return { scale, ox: cw / 2 - scale * (iw / 2 - v.panX), oy: ch / 2 - scale * (ih / 2 - v.panY) };
}
