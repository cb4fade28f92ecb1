/**
 * The frames of the open series, fetched in the order the viewer asks (the slice shown
 * first, then outwards), a few at a time, and kept in a byte-budgeted LRU.
 *
 * Greyscale and RGB frames come raw (stored values, little endian): the browser applies
 * window/level itself and the annotation layer measures ROI statistics on them. Other
 * colour models (YBR, palette colour) are rendered by the server and come as a bitmap.
 */
import type { InstanceMeta } from './dicom';
import { DicomWebError, type DicomWebClient } from './dicomweb';
import { range, type GreyPixels } from './presets';

export type Picture =
  | { kind: 'grey'; px: GreyPixels; lo: number; hi: number; bytes: number }
  | { kind: 'rgb'; px: Uint8Array | Uint16Array; bytes: number }
  | { kind: 'bitmap'; bitmap: ImageBitmap; bytes: number };

/** One image of the stack: a frame of an instance. */
export interface Slice {
  inst: InstanceMeta;
  /** 1-based. */
  frame: number;
  /** `<sop uid>:<frame>`: the annotation document key too. */
  key: string;
}

export function sliceKey(sop: string, frame: number): string {
  return `${sop}:${frame}`;
}

const PARALLEL = 4;
const BUDGET_BYTES = 768 * 2 ** 20;

/** The raw values as a typed array of their own (aligned) buffer. */
export function decodeRaw(bytes: Uint8Array, inst: InstanceMeta): Picture {
  const samples = inst.samples === 3 ? 3 : 1;
  const count = inst.rows * inst.columns * samples;
  const per = count > 0 ? Math.floor(bytes.byteLength / count) : 0;
  if (![1, 2, 4].includes(per) || (samples === 3 && per === 4)) {
    throw new DicomWebError(0, `unexpected frame size ${bytes.byteLength} for ${inst.rows}x${inst.columns}x${samples}`);
  }
  const own = bytes.slice(0, count * per).buffer;
  const signed = inst.pixelRepresentation === 1;
  if (samples === 3) {
    const px = per === 1 ? new Uint8Array(own) : new Uint16Array(own);
    return { kind: 'rgb', px, bytes: own.byteLength };
  }
  let px: GreyPixels;
  if (per === 1) px = signed ? new Int8Array(own) : new Uint8Array(own);
  else if (per === 2) px = signed ? new Int16Array(own) : new Uint16Array(own);
  else px = signed ? new Int32Array(own) : new Uint32Array(own);
  const [lo, hi] = range(px);
  return { kind: 'grey', px, lo, hi, bytes: own.byteLength };
}

/** Whether the browser shows this photometric interpretation from the raw values. */
export function rawViewable(inst: InstanceMeta): boolean {
  return (
    (inst.samples === 1 && (inst.photometric === 'MONOCHROME1' || inst.photometric === 'MONOCHROME2')) ||
    (inst.samples === 3 && inst.photometric === 'RGB')
  );
}

export class FrameLoader {
  private readonly cache = new Map<string, Picture>();
  private used = 0;
  private queue: Slice[] = [];
  private readonly inflight = new Map<string, AbortController>();
  private readonly failed = new Map<string, number>();
  private generation = 0;

  constructor(
    private readonly client: DicomWebClient,
    private readonly onLoaded: (key: string) => void,
  ) {}

  get(key: string): Picture | undefined {
    const p = this.cache.get(key);
    if (p) {
      // Most recently used last.
      this.cache.delete(key);
      this.cache.set(key, p);
    }
    return p;
  }

  has(key: string): boolean {
    return this.cache.has(key);
  }

  get loading(): number {
    return this.queue.length + this.inflight.size;
  }

  /** Load `order` in that order (it replaces what was waiting; fetches under way go on). */
  want(order: readonly Slice[]): void {
    this.queue = order.filter((s) => !this.cache.has(s.key) && !this.inflight.has(s.key) && (this.failed.get(s.key) ?? 0) < 3);
    this.pump();
  }

  /** Forget everything (another series). */
  clear(): void {
    this.generation += 1;
    for (const c of this.inflight.values()) c.abort();
    this.inflight.clear();
    this.queue = [];
    this.cache.clear();
    this.failed.clear();
    this.used = 0;
  }

  private pump(): void {
    while (this.inflight.size < PARALLEL && this.queue.length) {
      const s = this.queue.shift()!;
      if (this.cache.has(s.key) || this.inflight.has(s.key)) continue;
      const ctl = new AbortController();
      this.inflight.set(s.key, ctl);
      const gen = this.generation;
      void this.fetch(s, ctl.signal).then(
        (pic) => {
          if (gen !== this.generation) return;
          this.inflight.delete(s.key);
          this.put(s.key, pic);
          this.onLoaded(s.key);
          this.pump();
        },
        () => {
          if (gen !== this.generation) return;
          this.inflight.delete(s.key);
          this.failed.set(s.key, (this.failed.get(s.key) ?? 0) + 1);
          this.pump();
        },
      );
    }
  }

  private async fetch(s: Slice, signal: AbortSignal): Promise<Picture> {
    const { inst } = s;
    if (rawViewable(inst)) {
      const bytes = await this.client.frame(inst.studyUid, inst.seriesUid, inst.sopUid, s.frame, signal);
      return decodeRaw(bytes, inst);
    }
    const blob = await this.client.rendered(inst.studyUid, inst.seriesUid, inst.sopUid, s.frame, signal);
    const bitmap = await createImageBitmap(blob);
    return { kind: 'bitmap', bitmap, bytes: bitmap.width * bitmap.height * 4 };
  }

  private put(key: string, pic: Picture): void {
    this.cache.set(key, pic);
    this.used += pic.bytes;
    for (const [k, p] of this.cache) {
      if (this.used <= BUDGET_BYTES || k === key) break;
      this.cache.delete(k);
      this.used -= p.bytes;
      if (p.kind === 'bitmap') p.bitmap.close();
    }
  }
}
