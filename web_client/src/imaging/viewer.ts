/**
 * The stack viewer: one series at a time, shown through the annotation layer's canvas
 * (it is the layer's Scene, annotations/scene.ts), with the room's demo phantom until a
 * series is open.
 *
 * - Stack: every frame of every instance, in the server's order (Instance Number, then
 *   position). The first image shown is the middle one when a whole series is opened;
 *   frames load from the one shown outwards (frames.ts).
 * - Scroll: wheel, ArrowUp/ArrowDown, PageUp/PageDown (a tenth of the stack), Home/End and
 *   the slider under the image.
 * - Window/level: right-drag, Shift+drag, or drag in "Window" mode (horizontal: width,
 *   vertical: level); CT presets; computed here from the raw values with a lookup table.
 * - Zoom: Ctrl+wheel (about the pointer) or the buttons; pan: middle-drag or drag in
 *   "Pan" mode. Left-drag otherwise belongs to the annotation tools.
 *
 * Every change of what is shown is reported to `onView` listeners with whether it came
 * from this user (follow.ts presents those) or from applying someone else's view.
 */
import { h } from '../dom';
import { bindText, onLanguageChanged, type MsgKey } from '../i18n';
import { UNCALIBRATED, type Calibration, type ImageInfo } from '../annotations/measure';
import {
  mapping,
  PhantomScene,
  type CalibrationNote,
  type Scene,
  type SceneChange,
  type SceneImage,
  type Surface,
  type ViewTransform,
} from '../annotations/scene';
import type { ViewState } from '../net/protocol';
import { parseInstance, sortInstances, type DicomJson, type InstanceMeta } from './dicom';
import type { DicomWebClient } from './dicomweb';
import { FrameLoader, sliceKey, type Picture, type Slice } from './frames';
import { PRESETS, renderGrey, renderRgb, windowFromRange } from './presets';

export type MouseMode = 'draw' | 'window' | 'pan';

const MIN_ZOOM = 0.1;
const MAX_ZOOM = 32;
const WHEEL_STEP_PX = 50;

interface OpenSeries {
  study: string;
  series: string;
  stack: Slice[];
  modality: string;
}

interface Drag {
  kind: 'window' | 'pan';
  pointerId: number;
  x: number;
  y: number;
  center: number;
  width: number;
  panX: number;
  panY: number;
  /** Rescaled units per CSS pixel of drag. */
  rate: number;
}

function isTextEntry(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && (target.isContentEditable || target.matches('input, textarea, select'));
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

export class Viewer implements Scene {
  /** Mouse mode, window presets and zoom: above the image. */
  readonly toolbar: HTMLElement;
  /** The stack slider and its position: below the image. */
  readonly scrollbar: HTMLElement;
  private readonly overlay: HTMLElement;
  private readonly slider: HTMLInputElement;
  private readonly sliceLabel: HTMLElement;
  private readonly windowLabel: HTMLElement;
  private readonly zoomLabel: HTMLElement;
  private readonly modeButtons = new Map<MouseMode, HTMLButtonElement>();
  private readonly presetButtons: HTMLButtonElement[] = [];
  private readonly resetWindowBtn: HTMLButtonElement;
  private readonly controls: HTMLElement[] = [];

  /** Files dragged onto the image (the imaging panel shares them). */
  fileDrop: { over(ev: DragEvent): void; drop(ev: DragEvent): void } | null = null;
  private readonly phantom = new PhantomScene();
  private readonly loader: FrameLoader;
  private open: OpenSeries | null = null;
  private index = 0;
  private center: number | null = null;
  private width: number | null = null;
  /** The window the images state (reset target). */
  private ownWindow: [number, number] | null = null;
  private zoom = 1;
  private panX = 0;
  private panY = 0;
  private mode: MouseMode = 'draw';
  private surface: Surface | null = null;
  private drag: Drag | null = null;
  private wheelAcc = 0;

  private readonly picture = document.createElement('canvas');
  private readonly pictureCtx = this.picture.getContext('2d');
  private imageData: ImageData | null = null;
  /** What `picture` holds: slice key and window. */
  private drawn: { key: string; center: number | null; width: number | null } | null = null;
  private renderFrame = 0;
  private sceneImage: SceneImage | null = null;
  private sceneImageKey = '';
  private sceneImagePixels: Picture | undefined = undefined;

  private readonly listeners = new Set<(what: SceneChange) => void>();
  private readonly viewListeners = new Set<(local: boolean) => void>();
  private readonly seriesListeners = new Set<() => void>();
  private opening = 0;

  constructor(private readonly client: DicomWebClient) {
    this.loader = new FrameLoader(client, (key) => this.loaded(key));
    const mode = (m: MouseMode, key: MsgKey, title: MsgKey): HTMLButtonElement => {
      const btn = h('button', {
        class: 'small viewer-mode',
        testid: `viewer-mode-${m}`,
        i18n: key,
        i18nAttrs: { title },
        attrs: { type: 'button', 'aria-pressed': String(m === this.mode) },
        on: { click: () => this.setMode(m) },
      });
      this.modeButtons.set(m, btn);
      return btn;
    };
    const presets = h('div', { class: 'viewer-group', attrs: { role: 'group' }, i18nAttrs: { 'aria-label': 'imaging.presets_label' } });
    for (const p of PRESETS) {
      const btn = h('button', {
        class: 'small',
        testid: `preset-${p.id}`,
        i18n: p.key,
        i18nAttrs: { title: 'imaging.preset_title' },
        attrs: { type: 'button', 'data-center': p.center, 'data-width': p.width },
        on: { click: () => this.setWindow(p.center, p.width, true) },
      });
      this.presetButtons.push(btn);
      presets.appendChild(btn);
    }
    this.resetWindowBtn = h('button', {
      class: 'small',
      testid: 'preset-image',
      i18n: 'imaging.preset_image',
      i18nAttrs: { title: 'imaging.preset_image_title' },
      attrs: { type: 'button' },
      on: { click: () => this.resetWindow() },
    });
    presets.appendChild(this.resetWindowBtn);
    const zoomBtn = (testid: string, key: MsgKey, title: MsgKey, run: () => void): HTMLButtonElement =>
      h('button', { class: 'small', testid, i18n: key, i18nAttrs: { title }, attrs: { type: 'button' }, on: { click: run } });
    this.zoomLabel = h('span', { class: 'viewer-readout', testid: 'viewer-zoom' });
    this.windowLabel = h('span', { class: 'viewer-readout', testid: 'viewer-window' });
    const modes = h(
      'div',
      { class: 'viewer-group', attrs: { role: 'group' }, i18nAttrs: { 'aria-label': 'imaging.mode_label' } },
      mode('draw', 'imaging.mode_draw', 'imaging.mode_draw_title'),
      mode('window', 'imaging.mode_window', 'imaging.mode_window_title'),
      mode('pan', 'imaging.mode_pan', 'imaging.mode_pan_title'),
    );
    const zoom = h(
      'div',
      { class: 'viewer-group', attrs: { role: 'group' }, i18nAttrs: { 'aria-label': 'imaging.zoom_label' } },
      zoomBtn('zoom-out', 'imaging.zoom_out', 'imaging.zoom_out_title', () => this.zoomBy(1 / 1.25)),
      zoomBtn('zoom-in', 'imaging.zoom_in', 'imaging.zoom_in_title', () => this.zoomBy(1.25)),
      zoomBtn('zoom-fit', 'imaging.zoom_fit', 'imaging.zoom_fit_title', () => this.setTransform(1, 0, 0, true)),
      this.zoomLabel,
    );
    this.toolbar = h('div', { class: 'viewer-toolbar', testid: 'viewer-toolbar', attrs: { role: 'toolbar', hidden: true }, i18nAttrs: { 'aria-label': 'imaging.viewer_label' } }, modes, presets, zoom, this.windowLabel);
    this.slider = h('input', {
      class: 'viewer-slider',
      testid: 'viewer-slider',
      attrs: { type: 'range', min: 1, max: 1, step: 1, value: 1 },
      i18nAttrs: { 'aria-label': 'imaging.slider_label' },
      on: { input: () => this.setIndex(Number(this.slider.value) - 1, true) },
    });
    this.sliceLabel = h('span', { class: 'viewer-readout', testid: 'viewer-slice', attrs: { 'aria-live': 'off' } });
    this.scrollbar = h('div', { class: 'viewer-scroll', testid: 'viewer-scroll', attrs: { hidden: true } }, this.slider, this.sliceLabel);
    this.overlay = h('div', { class: 'viewer-overlay', testid: 'viewer-overlay', attrs: { 'aria-hidden': 'true' } });
    this.controls.push(this.toolbar, this.scrollbar);
    onLanguageChanged(() => this.updateReadouts());
    this.updateReadouts();
  }

  // ------------------------------------------------------------ Scene

  image(): SceneImage {
    const s = this.current;
    if (!s) return this.phantom.image();
    const pic = this.loader.get(s.key);
    if (this.sceneImage && this.sceneImageKey === s.key && this.sceneImagePixels === pic) return this.sceneImage;
    const { inst } = s;
    const [calibration, note] = calibrationOf(inst);
    const info: ImageInfo = {
      calibration,
      rows: inst.rows,
      columns: inst.columns,
      pixels: pic?.kind === 'grey' ? pic.px : null,
      slope: inst.slope,
      intercept: inst.intercept,
      unit: inst.unit,
    };
    this.sceneImage = {
      key: s.key,
      anchor: { study_uid: inst.studyUid, series_uid: inst.seriesUid, instance_uid: inst.sopUid, frame: s.frame },
      width: inst.columns,
      height: inst.rows,
      info,
      calibration: note,
      demo: false,
    };
    this.sceneImageKey = s.key;
    this.sceneImagePixels = pic;
    return this.sceneImage;
  }

  bitmap(): CanvasImageSource | null {
    const s = this.current;
    if (!s) return this.phantom.bitmap();
    return this.drawn?.key === s.key ? this.picture : null;
  }

  view(): ViewTransform {
    return this.current ? { zoom: this.zoom, panX: this.panX, panY: this.panY } : this.phantom.view();
  }

  onChange(cb: (what: SceneChange) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  attach(surface: Surface): void {
    this.surface = surface;
    const { canvas, stage, keys } = surface;
    stage.appendChild(this.overlay);
    stage.addEventListener('pointerdown', (ev) => this.down(ev), { capture: true });
    stage.addEventListener('pointermove', (ev) => this.move(ev), { capture: true });
    stage.addEventListener('pointerup', (ev) => this.up(ev), { capture: true });
    stage.addEventListener('pointercancel', (ev) => this.up(ev), { capture: true });
    canvas.addEventListener('contextmenu', (ev) => {
      if (this.current) ev.preventDefault();
    });
    canvas.addEventListener('wheel', (ev) => this.wheel(ev), { passive: false });
    keys.addEventListener('keydown', (ev) => this.key(ev));
    stage.addEventListener('dragover', (ev) => this.fileDrop?.over(ev));
    stage.addEventListener('dragleave', () => stage.classList.remove('dragging'));
    stage.addEventListener('drop', (ev) => {
      stage.classList.remove('dragging');
      this.fileDrop?.drop(ev);
    });
  }

  /** Controls the annotation panel places around the image. */
  get around(): { above: HTMLElement; below: HTMLElement } {
    return { above: this.toolbar, below: this.scrollbar };
  }

  // ------------------------------------------------------------ state

  private get current(): Slice | null {
    return this.open?.stack[this.index] ?? null;
  }

  get series(): { study: string; series: string } | null {
    return this.open ? { study: this.open.study, series: this.open.series } : null;
  }

  get stackSize(): number {
    return this.open?.stack.length ?? 0;
  }

  /** What is shown, as presented to followers (null: the demo image). */
  viewState(): ViewState | null {
    const s = this.current;
    if (!s) return null;
    return {
      study_uid: s.inst.studyUid,
      series_uid: s.inst.seriesUid,
      sop_uid: s.inst.sopUid,
      frame: s.frame,
      window_center: this.center,
      window_width: this.width,
      zoom: this.zoom,
      pan_x: this.panX,
      pan_y: this.panY,
    };
  }

  /** For the tests: what the viewer shows. */
  debugState(): Record<string, unknown> {
    const s = this.current;
    return {
      series_uid: this.open?.series ?? null,
      sop_uid: s?.inst.sopUid ?? null,
      frame: s?.frame ?? null,
      key: s?.key ?? null,
      index: this.index,
      count: this.stackSize,
      shown: !!s && this.drawn?.key === s.key,
      window_center: this.center,
      window_width: this.width,
      zoom: this.zoom,
      pan_x: this.panX,
      pan_y: this.panY,
      mode: this.mode,
    };
  }

  /** Listen to changes of what is shown; `local`: made by this user. */
  onView(cb: (local: boolean) => void): () => void {
    this.viewListeners.add(cb);
    return () => this.viewListeners.delete(cb);
  }

  /** The open series or its stack changed. */
  onSeries(cb: () => void): () => void {
    this.seriesListeners.add(cb);
    return () => this.seriesListeners.delete(cb);
  }

  private emit(what: SceneChange[], local: boolean | null): void {
    for (const w of what) for (const cb of this.listeners) cb(w);
    if (local !== null) for (const cb of this.viewListeners) cb(local);
    this.updateReadouts();
  }

  // ------------------------------------------------------------ series

  /**
   * Show a series. `at` picks the image (else the middle one); `local`: the user asked.
   * Resolves once the metadata is in (false when the series is gone or another opened).
   */
  async openSeries(study: string, series: string, opts: { at?: { sop: string; frame: number }; local: boolean }): Promise<boolean> {
    if (this.open?.series === series) {
      // Already open: keep what is loaded, learn of new images, go to the one asked for.
      if (opts.at && !this.has(opts.at.sop, opts.at.frame)) await this.refresh();
      if (opts.at) this.goTo(opts.at.sop, opts.at.frame, opts.local);
      return this.open?.series === series;
    }
    const ticket = ++this.opening;
    let meta: DicomJson[];
    try {
      meta = await this.client.metadata(study, series);
    } catch {
      return false;
    }
    if (ticket !== this.opening) return false;
    const stack = buildStack(meta);
    if (!stack.length) return false;
    this.loader.clear();
    this.open = { study, series, stack, modality: stack[0]!.inst.modality };
    this.drawn = null;
    this.sceneImage = null;
    let index = Math.floor((stack.length - 1) / 2);
    if (opts.at) {
      const target = sliceKey(opts.at.sop, opts.at.frame);
      const i = stack.findIndex((s) => s.key === target);
      if (i >= 0) index = i;
    }
    this.index = index;
    const mid = stack[Math.floor((stack.length - 1) / 2)]!.inst;
    this.ownWindow = mid.windowCenter !== null && mid.windowWidth !== null ? [mid.windowCenter, mid.windowWidth] : null;
    [this.center, this.width] = this.ownWindow ?? [null, null];
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.toolbar.hidden = false;
    this.scrollbar.hidden = stack.length < 2;
    this.updatePresets();
    this.prefetch();
    this.render();
    for (const cb of this.seriesListeners) cb();
    this.emit(['image', 'view', 'pixels'], opts.local);
    return true;
  }

  /** New instances arrived in the open series: the stack grows, the image shown stays. */
  async refresh(): Promise<void> {
    const open = this.open;
    if (!open) return;
    let meta: DicomJson[];
    try {
      meta = await this.client.metadata(open.study, open.series);
    } catch {
      return;
    }
    if (this.open !== open) return;
    const stack = buildStack(meta);
    if (stack.length <= open.stack.length) return;
    const keep = this.current?.key;
    open.stack = stack;
    const i = keep ? stack.findIndex((s) => s.key === keep) : -1;
    this.index = i >= 0 ? i : Math.min(this.index, stack.length - 1);
    if (!this.ownWindow) {
      const mid = stack[Math.floor((stack.length - 1) / 2)]!.inst;
      if (mid.windowCenter !== null && mid.windowWidth !== null) this.ownWindow = [mid.windowCenter, mid.windowWidth];
    }
    this.scrollbar.hidden = stack.length < 2;
    this.prefetch();
    for (const cb of this.seriesListeners) cb();
    this.updateReadouts();
  }

  private goTo(sop: string, frame: number, local: boolean): void {
    const i = this.open?.stack.findIndex((s) => s.key === sliceKey(sop, frame)) ?? -1;
    if (i >= 0) this.setIndex(i, local);
  }

  /** Whether the stack holds this image. */
  has(sop: string, frame: number): boolean {
    const key = sliceKey(sop, frame);
    return !!this.open?.stack.some((s) => s.key === key);
  }

  /** Show the presenter's view (opening the series, or waiting for its metadata). */
  async applyView(v: ViewState): Promise<void> {
    if (this.open?.series !== v.series_uid || !this.has(v.sop_uid, v.frame)) {
      const ok = await this.openSeries(v.study_uid, v.series_uid, { at: { sop: v.sop_uid, frame: v.frame }, local: false });
      if (!ok || this.open?.series !== v.series_uid) return;
    }
    const open = this.open;
    if (!open) return;
    const i = open.stack.findIndex((s) => s.key === sliceKey(v.sop_uid, v.frame));
    const changes: SceneChange[] = ['view'];
    if (i >= 0 && i !== this.index) {
      this.index = i;
      changes.push('image');
      this.prefetch();
    }
    if (v.window_center !== null && v.window_width !== null) {
      this.center = v.window_center;
      this.width = v.window_width;
    }
    this.zoom = clamp(v.zoom, MIN_ZOOM, MAX_ZOOM);
    this.panX = v.pan_x;
    this.panY = v.pan_y;
    this.render();
    this.emit(changes, false);
  }

  // ------------------------------------------------------------ changes

  setIndex(i: number, local: boolean): void {
    const open = this.open;
    if (!open) return;
    const next = clamp(Math.round(i), 0, open.stack.length - 1);
    if (next === this.index) {
      this.updateReadouts();
      return;
    }
    this.index = next;
    this.prefetch();
    this.render();
    this.emit(['image'], local);
  }

  step(delta: number): void {
    this.setIndex(this.index + delta, true);
  }

  setWindow(center: number, width: number, local: boolean): void {
    if (!this.current || !this.isGrey()) return;
    this.center = center;
    this.width = Math.max(1, width);
    this.scheduleRender();
    this.emit([], local);
  }

  private resetWindow(): void {
    const pic = this.current ? this.loader.get(this.current.key) : undefined;
    const own = this.ownWindow ?? (pic?.kind === 'grey' ? windowFromRange(pic.lo, pic.hi, this.current!.inst.slope, this.current!.inst.intercept) : null);
    if (own) this.setWindow(own[0], own[1], true);
  }

  private setTransform(zoom: number, panX: number, panY: number, local: boolean): void {
    if (!this.current) return;
    const s = this.current.inst;
    this.zoom = clamp(zoom, MIN_ZOOM, MAX_ZOOM);
    this.panX = clamp(panX, -s.columns, s.columns);
    this.panY = clamp(panY, -s.rows, s.rows);
    this.emit(['view'], local);
  }

  /** Zoom by `factor` about a client point (default: the viewport centre). */
  zoomBy(factor: number, clientX?: number, clientY?: number): void {
    const s = this.current;
    if (!s) return;
    const z = clamp(this.zoom * factor, MIN_ZOOM, MAX_ZOOM);
    if (clientX === undefined || clientY === undefined || !this.surface) {
      this.setTransform(z, this.panX, this.panY, true);
      return;
    }
    // Keep the image point under the pointer where it is.
    const [x, y] = this.surface.toImage(clientX, clientY);
    const r = this.zoom / z;
    const hw = s.inst.columns / 2;
    const hh = s.inst.rows / 2;
    this.setTransform(z, r * (x - hw + this.panX) - x + hw, r * (y - hh + this.panY) - y + hh, true);
  }

  setMode(m: MouseMode): void {
    this.mode = m;
    for (const [k, b] of this.modeButtons) b.setAttribute('aria-pressed', String(k === m));
    if (this.surface) this.surface.canvas.dataset['viewerMode'] = m;
  }

  private isGrey(): boolean {
    const s = this.current;
    return !!s && s.inst.samples === 1 && s.inst.photometric.startsWith('MONOCHROME');
  }

  // ------------------------------------------------------------ loading and drawing

  /** The shown image first, then outwards. */
  private prefetch(): void {
    const open = this.open;
    if (!open) return;
    const order: Slice[] = [];
    const n = open.stack.length;
    for (let d = 0; d < n; d++) {
      const a = open.stack[this.index + d];
      const b = d > 0 ? open.stack[this.index - d] : undefined;
      if (a) order.push(a);
      if (b) order.push(b);
      if (!a && !b) break;
    }
    this.loader.want(order);
  }

  private loaded(key: string): void {
    const s = this.current;
    if (s?.key === key) {
      const pic = this.loader.get(key);
      if (pic?.kind === 'grey' && (this.center === null || this.width === null)) {
        [this.center, this.width] = this.ownWindow ?? windowFromRange(pic.lo, pic.hi, s.inst.slope, s.inst.intercept);
      }
      this.render();
      // The image's pixels arrived: its measurements can be computed now.
      this.emit(['pixels'], null);
    }
    this.updateReadouts();
  }

  private scheduleRender(): void {
    if (this.renderFrame) return;
    this.renderFrame = requestAnimationFrame(() => {
      this.renderFrame = 0;
      if (this.render()) this.emit(['pixels'], null);
    });
  }

  /** Draw the current slice into `picture`; true when it changed. */
  private render(): boolean {
    const s = this.current;
    const ctx = this.pictureCtx;
    if (!s || !ctx) return false;
    const pic = this.loader.get(s.key);
    if (!pic) return false;
    const d = this.drawn;
    if (d?.key === s.key && (pic.kind !== 'grey' || (d.center === this.center && d.width === this.width))) return false;
    const { rows, columns } = s.inst;
    if (pic.kind === 'bitmap') {
      this.size(pic.bitmap.width, pic.bitmap.height);
      ctx.drawImage(pic.bitmap, 0, 0);
    } else {
      this.size(columns, rows);
      let img = this.imageData;
      if (!img || img.width !== columns || img.height !== rows) img = this.imageData = ctx.createImageData(columns, rows);
      const out = new Uint32Array(img.data.buffer);
      if (pic.kind === 'rgb') renderRgb(pic.px, out);
      else {
        if (this.center === null || this.width === null) [this.center, this.width] = windowFromRange(pic.lo, pic.hi, s.inst.slope, s.inst.intercept);
        renderGrey(pic.px, pic.lo, pic.hi, s.inst.slope, s.inst.intercept, this.center, this.width, s.inst.photometric === 'MONOCHROME1', out);
      }
      ctx.putImageData(img, 0, 0);
    }
    this.drawn = { key: s.key, center: this.center, width: this.width };
    return true;
  }

  private size(w: number, h: number): void {
    if (this.picture.width !== w) this.picture.width = w;
    if (this.picture.height !== h) this.picture.height = h;
  }

  // ------------------------------------------------------------ input

  private down(ev: PointerEvent): void {
    const s = this.current;
    if (!s || this.drag) return;
    const left = ev.button === 0;
    let kind: Drag['kind'] | null = null;
    if (ev.button === 2 || (left && ev.shiftKey) || (left && this.mode === 'window')) kind = 'window';
    else if (ev.button === 1 || (left && this.mode === 'pan')) kind = 'pan';
    if (!kind || (kind === 'window' && !this.isGrey())) return;
    ev.preventDefault();
    ev.stopPropagation();
    const pic = this.loader.get(s.key);
    const span = pic?.kind === 'grey' ? Math.abs((pic.hi - pic.lo) * s.inst.slope) : 1000;
    this.drag = {
      kind,
      pointerId: ev.pointerId,
      x: ev.clientX,
      y: ev.clientY,
      center: this.center ?? 0,
      width: this.width ?? 1,
      panX: this.panX,
      panY: this.panY,
      rate: Math.max(span / 600, 0.05),
    };
    try {
      this.surface?.canvas.setPointerCapture(ev.pointerId);
    } catch {
      // synthetic events without an active pointer
    }
  }

  private move(ev: PointerEvent): void {
    const d = this.drag;
    if (!d || ev.pointerId !== d.pointerId) return;
    ev.stopPropagation();
    const dx = ev.clientX - d.x;
    const dy = ev.clientY - d.y;
    if (d.kind === 'window') {
      this.setWindow(d.center + dy * d.rate, Math.max(1, d.width + dx * d.rate), true);
      return;
    }
    const s = this.current;
    const surf = this.surface;
    if (!s || !surf) return;
    const { width, height } = surf.size();
    const m = mapping(width, height, s.inst.columns, s.inst.rows, { zoom: this.zoom, panX: 0, panY: 0 });
    this.setTransform(this.zoom, d.panX + dx / m.scale, d.panY + dy / m.scale, true);
  }

  private up(ev: PointerEvent): void {
    const d = this.drag;
    if (!d || ev.pointerId !== d.pointerId) return;
    ev.stopPropagation();
    this.drag = null;
  }

  private wheel(ev: WheelEvent): void {
    if (!this.current) return;
    ev.preventDefault();
    const px = ev.deltaMode === 1 ? ev.deltaY * 20 : ev.deltaMode === 2 ? ev.deltaY * 400 : ev.deltaY;
    if (ev.ctrlKey || ev.metaKey) {
      this.zoomBy(Math.exp(-px * 0.002), ev.clientX, ev.clientY);
      return;
    }
    // A mouse wheel notch is one image; a touchpad's small deltas add up to one.
    if (Math.abs(px) >= WHEEL_STEP_PX) {
      this.wheelAcc = 0;
      this.step(Math.sign(px));
      return;
    }
    this.wheelAcc += px;
    if (Math.abs(this.wheelAcc) < WHEEL_STEP_PX) return;
    this.step(Math.sign(this.wheelAcc));
    this.wheelAcc = 0;
  }

  private key(ev: KeyboardEvent): void {
    const open = this.open;
    if (!open || ev.defaultPrevented || isTextEntry(ev.target) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const page = Math.max(1, Math.round(open.stack.length / 10));
    const moves: Record<string, number> = { ArrowUp: -1, ArrowDown: 1, PageUp: -page, PageDown: page };
    if (ev.key === 'Home') this.setIndex(0, true);
    else if (ev.key === 'End') this.setIndex(open.stack.length - 1, true);
    else if (moves[ev.key] !== undefined) this.step(moves[ev.key]!);
    else return;
    ev.preventDefault();
  }

  // ------------------------------------------------------------ readouts

  private updatePresets(): void {
    const ct = this.open?.modality === 'CT';
    for (const b of this.presetButtons) b.hidden = !ct;
    this.resetWindowBtn.disabled = !this.isGrey();
    this.modeButtons.get('window')!.disabled = !this.isGrey();
  }

  private updateReadouts(): void {
    const open = this.open;
    const s = this.current;
    if (!open || !s) {
      bindText(this.overlay, 'imaging.demo_overlay');
      this.overlay.dataset['state'] = 'demo';
      return;
    }
    const n = open.stack.length;
    this.slider.max = String(n);
    this.slider.value = String(this.index + 1);
    const loading = this.loader.loading;
    bindText(this.sliceLabel, loading ? 'imaging.slice_loading' : 'imaging.slice', { i: this.index + 1, n, loading });
    const win = this.isGrey() && this.center !== null && this.width !== null;
    if (win) bindText(this.windowLabel, 'imaging.window_readout', { c: Math.round(this.center!), w: Math.round(this.width!) });
    else this.windowLabel.textContent = '';
    bindText(this.zoomLabel, 'imaging.zoom_readout', { z: Math.round(this.zoom * 100) });
    const shown = this.drawn?.key === s.key;
    this.overlay.dataset['state'] = shown ? 'shown' : 'loading';
    const args = { modality: s.inst.modality || '–', i: this.index + 1, n };
    bindText(this.overlay, shown ? 'imaging.overlay' : 'imaging.overlay_loading', args);
    this.resetWindowBtn.disabled = !this.isGrey();
    this.modeButtons.get('window')!.disabled = !this.isGrey();
  }
}

function calibrationOf(inst: InstanceMeta): [Calibration, CalibrationNote] {
  if (inst.pixelSpacing) {
    const [row, column] = inst.pixelSpacing;
    return [{ rowSpacing: row, columnSpacing: column, source: 'PixelSpacing' }, { kind: 'pixel', row, column }];
  }
  if (inst.imagerPixelSpacing) {
    const [row, column] = inst.imagerPixelSpacing;
    return [{ rowSpacing: row, columnSpacing: column, source: 'ImagerPixelSpacing' }, { kind: 'imager', row, column }];
  }
  return [UNCALIBRATED, { kind: 'none' }];
}

function buildStack(meta: DicomJson[]): Slice[] {
  const insts = sortInstances(meta.map(parseInstance).filter((m): m is InstanceMeta => m !== null));
  const stack: Slice[] = [];
  for (const inst of insts) for (let f = 1; f <= inst.frames; f++) stack.push({ inst, frame: f, key: sliceKey(inst.sopUid, f) });
  return stack;
}
