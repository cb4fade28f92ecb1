/**
 * The room's annotation layer: tools, the image with everyone's annotations and pointers,
 * selection and editing, per-user undo/redo and the list of annotations with their
 * measurements. Observers see everything (and show their pointer) but cannot draw.
 *
 * The image is the scene's (scene.ts): the viewer's current image, or the demo phantom.
 * Each image has its own shared document (key `<sop uid>:<frame>`); when the viewer shows
 * another image, the layer switches to that image's document, pointers and measurements.
 *
 * Keys, while the focus is in the panel: Ctrl+Z undo, Ctrl+Shift+Z (or Ctrl+Y) redo,
 * Delete/Backspace deletes the selection, arrow keys nudge it (Shift: by 10 pixels),
 * Escape cancels the shape being drawn or clears the selection, Enter finishes a polyline.
 */
import * as Y from 'yjs';
import { clearStatus, h } from '../dom';
import { bindText, onLanguageChanged, t, type MsgKey } from '../i18n';
import { ServerEvent, type JoinedPayload } from '../net/protocol';
import type { RoomSocket } from '../net/socket';
import { AnnotationCanvas } from './canvas';
import { AnnotationDoc, LOCAL } from './doc';
import { Editor } from './editor';
import { installTestHooks } from './hooks';
import { spacing } from './format';
import { AnnotationList } from './list';
import { PHANTOM, phantomPixels } from './phantom';
import { Presence } from './presence';
import { Roster } from './roster';
import { PhantomScene, type Scene, type SceneImage } from './scene';
import { TextForm } from './textform';
import { colorFor, editAnnotation, measureAnnotation, type Annotation, type ToolKind } from './tools';

interface ToolDef {
  kind: ToolKind;
  testid: string;
  key: MsgKey;
  hint: MsgKey;
}

const TOOLS: readonly ToolDef[] = [
  { kind: 'select', testid: 'tool-select', key: 'annotations.tool_select', hint: 'annotations.hint_select' },
  { kind: 'line', testid: 'tool-line', key: 'annotations.tool_line', hint: 'annotations.hint_drag' },
  { kind: 'arrow', testid: 'tool-arrow', key: 'annotations.tool_arrow', hint: 'annotations.hint_drag' },
  { kind: 'polyline', testid: 'tool-polyline', key: 'annotations.tool_polyline', hint: 'annotations.hint_polyline' },
  { kind: 'freehand', testid: 'tool-freehand', key: 'annotations.tool_freehand', hint: 'annotations.hint_freehand' },
  { kind: 'rectangle', testid: 'tool-rect', key: 'annotations.tool_rect', hint: 'annotations.hint_region' },
  { kind: 'ellipse', testid: 'tool-ellipse', key: 'annotations.tool_ellipse', hint: 'annotations.hint_region' },
  { kind: 'angle', testid: 'tool-angle', key: 'annotations.tool_angle', hint: 'annotations.hint_angle' },
  { kind: 'point', testid: 'tool-point', key: 'annotations.tool_point', hint: 'annotations.hint_point' },
  { kind: 'text', testid: 'tool-text', key: 'annotations.tool_text', hint: 'annotations.hint_text' },
];

function isTextEntry(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && (target.isContentEditable || target.matches('input, textarea, select'));
}

export class AnnotationPanel {
  readonly el: HTMLElement;
  readonly doc: AnnotationDoc;
  private readonly roster: Roster;
  private readonly presence: Presence;
  private readonly editor: Editor;
  private readonly canvas: AnnotationCanvas;
  private readonly list: AnnotationList;
  private undo: Y.UndoManager;
  private readonly toolButtons = new Map<ToolKind, HTMLButtonElement>();
  private readonly undoBtn: HTMLButtonElement;
  private readonly redoBtn: HTMLButtonElement;
  private readonly deleteBtn: HTMLButtonElement;
  private readonly editTextBtn: HTMLButtonElement;
  private readonly closedToggle: HTMLInputElement;
  private readonly closedRow: HTMLElement;
  private readonly readOnlyNote: HTMLElement;
  private readonly hint: HTMLElement;
  private readonly calibrationShort: HTMLElement;
  private readonly calibrationNote: HTMLElement;
  private readonly imageNote: HTMLElement;
  private readonly observerNote: HTMLElement;
  private readonly exportBtn: HTMLButtonElement;
  private readonly exportNote: HTMLElement;
  /** The image the layer is on (its key is the document's). */
  private image: SceneImage;
  private tool: ToolKind = 'line';
  private canDraw = false;
  private isHost = false;
  private selfId: string | null = null;
  private selectedId: string | null = null;

  constructor(
    socket: RoomSocket,
    private readonly scene: Scene = new PhantomScene(),
    /** Where the room's exports are fetched (none in a room without a server). */
    private readonly exports?: { roomId: string; token: () => string | null },
  ) {
    this.image = scene.image();
    this.doc = new AnnotationDoc(socket, this.image.key);
    this.roster = new Roster(socket);
    this.presence = new Presence(
      { send: (u) => this.doc.sendAwareness(u), live: () => this.selfId !== null && socket.connected },
      this.image.key,
    );
    this.doc.onAwareness((u) => this.presence.apply(u));
    this.editor = new Editor(
      this.doc,
      () => ({ self: this.selfId, isHost: this.isHost, canDraw: this.canDraw }),
      () => this.undo.stopCapturing(),
    );
    const textForm = new TextForm();
    this.canvas = new AnnotationCanvas({
      scene,
      editor: this.editor,
      presence: this.presence,
      textForm,
      self: () => this.selfId,
      tool: () => this.effectiveTool,
      selected: () => this.selectedId,
      select: (id) => this.select(id),
    });
    this.list = new AnnotationList({
      image: () => this.scene.image(),
      editor: this.editor,
      roster: this.roster,
      self: () => this.selfId,
      selected: () => this.selectedId,
      select: (id) => this.select(id, true),
    });

    const tools = h('div', { class: 'annotation-toolgroup', attrs: { role: 'group' }, i18nAttrs: { 'aria-label': 'annotations.tools_label' } });
    for (const t of TOOLS) {
      const btn = h('button', {
        class: 'annotation-tool',
        testid: t.testid,
        i18n: t.key,
        attrs: { type: 'button', 'aria-pressed': 'false', 'data-tool': t.kind },
        on: { click: () => this.setTool(t.kind) },
      });
      this.toolButtons.set(t.kind, btn);
      tools.appendChild(btn);
    }
    const action = (testid: string, key: MsgKey, title: MsgKey, run: () => void, cls = ''): HTMLButtonElement =>
      h('button', { class: cls, testid, i18n: key, i18nAttrs: { title }, attrs: { type: 'button' }, on: { click: run } });
    this.undoBtn = action('undo', 'annotations.undo', 'annotations.undo_title', () => this.runUndo());
    this.redoBtn = action('redo', 'annotations.redo', 'annotations.redo_title', () => this.runRedo());
    this.deleteBtn = action('delete-annotation', 'annotations.delete', 'annotations.delete_title', () => this.deleteSelected(), 'danger');
    this.editTextBtn = action('edit-text', 'annotations.edit_text', 'annotations.edit_text', () => {
      if (this.selectedId) void this.canvas.editText(this.selectedId);
    });
    this.closedToggle = h('input', {
      testid: 'annotation-closed',
      attrs: { type: 'checkbox', id: 'annotation-closed' },
      on: { change: () => this.setClosed(this.closedToggle.checked) },
    });
    this.closedRow = h(
      'span',
      { class: 'annotation-closed', attrs: { hidden: true } },
      this.closedToggle,
      h('label', { i18n: 'annotations.closed_region', attrs: { for: 'annotation-closed' } }),
    );
    const actions = h('div', { class: 'annotation-actions', attrs: { role: 'group' }, i18nAttrs: { 'aria-label': 'annotations.actions_label' } }, this.undoBtn, this.redoBtn, this.deleteBtn);
    const toolbar = h('div', { class: 'annotation-toolbar', attrs: { role: 'toolbar' }, i18nAttrs: { 'aria-label': 'annotations.title' } }, tools, actions);

    this.hint = h('p', { class: 'hint annotation-hint', testid: 'annotation-hint', attrs: { 'aria-live': 'polite' } });
    this.readOnlyNote = h('p', { class: 'hint', testid: 'annotation-read-only', i18n: 'annotations.read_only', attrs: { hidden: true } });
    this.observerNote = h('p', { class: 'hint', testid: 'annotation-observer-note', i18n: 'annotations.observer_note', attrs: { hidden: true } });
    this.calibrationShort = h('p', { class: 'hint annotation-cal-short', testid: 'annotation-calibration-short' });
    this.calibrationNote = h('p', { class: 'hint', testid: 'annotation-calibration' });
    this.imageNote = h('p', { class: 'hint', testid: 'annotation-phantom' });
    this.exportBtn = action('export-sr', 'annotations.export_sr', 'annotations.export_sr_title', () => void this.exportReport());
    this.exportNote = h('p', { class: 'hint', testid: 'export-note', attrs: { 'aria-live': 'polite' } });
    const around = scene.around;

    this.el = h(
      'section',
      { class: 'annotations panel', testid: 'annotations', on: { keydown: (ev) => this.onKey(ev) } },
      h('h2', { i18n: 'annotations.title' }),
      this.calibrationNote,
      this.imageNote,
      toolbar,
      this.observerNote,
      // Nothing above the image changes size while drawing: what depends on the tool or
      // the selection lives beside it.
      h(
        'div',
        { class: 'annotation-body' },
        h('div', { class: 'annotation-image' }, around?.above, this.canvas.stage, around?.below),
        h(
          'div',
          { class: 'annotation-side' },
          this.hint,
          h('div', { class: 'annotation-selection' }, this.readOnlyNote, this.editTextBtn, this.closedRow),
          h('h3', { i18n: 'annotations.list_title' }),
          this.calibrationShort,
          this.list.empty,
          this.list.el,
          this.exportBtn,
          this.exportNote,
        ),
      ),
    );

    this.undo = this.bindDoc();
    this.doc.onReset(() => {
      this.canvas.abort();
      this.undo.destroy();
      this.undo = this.bindDoc();
      this.changed();
    });
    this.roster.onChange(() => {
      this.updateUser();
      this.list.schedule();
    });
    this.presence.onChange(() => this.canvas.schedule());
    socket.socket.on('disconnect', () => this.presence.dropRemote());
    // When someone (re)joins, which the room announces, everyone sends their state again:
    // the newcomer learns it at once, even from a server that does not replay awareness.
    socket.socket.on(ServerEvent.presence, (p) => {
      if (p.id !== this.selfId && p.state === 'joined') this.presence.announce();
    });
    socket.onStatus((s) => {
      if (s === 'closed') this.presence.destroy();
    });
    onLanguageChanged(() => {
      this.showCalibration();
      this.list.schedule();
      this.canvas.schedule();
    });
    this.showCalibration();
    scene.onChange(() => this.sceneChanged());
    scene.attach?.({
      canvas: this.canvas.el,
      stage: this.canvas.stage,
      keys: this.el,
      toImage: (x, y) => this.canvas.clientToImage(x, y),
      size: () => this.canvas.size(),
    });
    installTestHooks({
      annotations: () => this.doc.map.toJSON() as Record<string, Annotation>,
      pointers: () => this.presence.pointers().map((p) => ({ ...p })),
      synced: () => this.doc.isSynced,
      rawDelete: (id) => this.doc.doc.transact(() => this.doc.map.delete(id), LOCAL),
      measurements: () => Object.fromEntries(this.editor.items().map((a) => [a.id, measureAnnotation(a, this.scene.image().info)])),
      image: () => {
        const img = this.scene.image();
        const cal = img.info.calibration;
        return { key: img.key, anchor: { ...img.anchor }, demo: img.demo, width: img.width, height: img.height, calibration: cal.source, pixelSpacing: [cal.rowSpacing, cal.columnSpacing], pixelsLoaded: img.info.pixels !== null };
      },
      phantom: () => {
        const px = phantomPixels();
        const bytes = new Uint8Array(px.buffer, px.byteOffset, px.byteLength);
        let bin = '';
        for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        const { rows, columns, pixelSpacing, slope, intercept } = PHANTOM;
        return { rows, columns, pixelSpacing, slope, intercept, pixels: btoa(bin) };
      },
    });
    this.setTool('line');
    this.applyRights();
  }

  /** Every `joined`: who we are, what we may do, the participants' names, a fresh sync. */
  onJoined(selfId: string, role: string, joined: Pick<JoinedPayload, 'self' | 'participants'>): void {
    this.selfId = selfId;
    this.roster.setJoined(joined);
    this.setRole(role);
    this.updateUser();
    this.doc.onJoined();
    this.presence.rejoin();
    this.list.schedule();
  }

  setRole(role: string): void {
    this.canDraw = role === 'host' || role === 'participant';
    this.isHost = role === 'host';
    this.doc.setCanWrite(this.canDraw);
    if (!this.canDraw) this.canvas.abort();
    this.showHint();
    this.canvas.refresh();
    this.applyRights();
    this.list.schedule();
    this.canvas.schedule();
  }

  /**
   * What lengths and values are measured with: "Pixel Spacing 0.5 mm (demo)" next to the
   * measurements and a sentence above the image, numbers in the language.
   */
  private showCalibration(): void {
    const img = this.scene.image();
    const cal = img.calibration;
    const mm = (dy: number, dx: number): string => (dx === dy ? spacing(dx) : `${spacing(dy)} × ${spacing(dx)}`);
    switch (cal.kind) {
      case 'demo':
        bindText(this.calibrationShort, 'annotations.calibration_short', { mm: mm(PHANTOM.pixelSpacing[0], PHANTOM.pixelSpacing[1]) });
        bindText(this.calibrationNote, 'annotations.calibration', { mm: cal.mm });
        break;
      case 'pixel':
        bindText(this.calibrationShort, 'annotations.calibration_short_pixel', { mm: mm(cal.row, cal.column) });
        bindText(this.calibrationNote, 'annotations.calibration_pixel', { mm: mm(cal.row, cal.column) });
        break;
      case 'imager':
        bindText(this.calibrationShort, 'annotations.calibration_short_imager', { mm: mm(cal.row, cal.column) });
        bindText(this.calibrationNote, 'annotations.calibration_imager', { mm: mm(cal.row, cal.column) });
        break;
      case 'none':
        bindText(this.calibrationShort, 'annotations.calibration_short_none');
        bindText(this.calibrationNote, 'annotations.calibration_none');
        break;
    }
    if (img.demo) {
      bindText(this.imageNote, 'annotations.phantom_note', { slope: PHANTOM.slope, intercept: PHANTOM.intercept, ww: PHANTOM.window.width, wl: PHANTOM.window.level });
    } else if (img.info.unit) {
      bindText(this.imageNote, 'annotations.image_note_unit', { slope: spacing(img.info.slope), intercept: spacing(img.info.intercept), unit: img.info.unit === 'HU' ? t('annotations.unit_hu') : img.info.unit });
    } else {
      bindText(this.imageNote, 'annotations.image_note', { slope: spacing(img.info.slope), intercept: spacing(img.info.intercept) });
    }
  }

  /** The viewer shows another image, new pixels (its window, or it loaded) or another view. */
  private sceneChanged(): void {
    const img = this.scene.image();
    if (img.key !== this.image.key) {
      this.canvas.abort();
      this.selectedId = null;
      this.presence.leaveImage();
      this.doc.switchTo(img.key);
      this.presence.setImage(img.key);
      this.canvas.imageChanged();
    }
    if (img !== this.image) {
      // Measurements depend on the image (calibration, stored values).
      this.image = img;
      this.showCalibration();
      this.list.schedule();
      clearStatus(this.exportNote);
      this.applyRights();
    }
    this.canvas.schedule();
  }

  private get effectiveTool(): ToolKind {
    return this.canDraw ? this.tool : 'select';
  }

  private updateUser(): void {
    if (this.selfId === null) return;
    this.presence.setUser(this.roster.name(this.selfId) ?? '', colorFor(this.selfId));
  }

  private bindDoc(): Y.UndoManager {
    const map = this.doc.map;
    map.observe(() => this.changed());
    const um = new Y.UndoManager(map, { trackedOrigins: new Set([LOCAL]), captureTimeout: 2 ** 31 });
    const refresh = (): void => this.applyRights();
    um.on('stack-item-added', refresh);
    um.on('stack-item-popped', refresh);
    um.on('stack-cleared', refresh);
    return um;
  }

  private changed(): void {
    this.editor.invalidate();
    if (this.selectedId !== null && !this.editor.get(this.selectedId) && !this.canvas.busy) this.selectedId = null;
    this.canvas.schedule();
    this.list.schedule();
    this.applyRights();
  }

  private select(id: string | null, fromList = false): void {
    if (fromList && id !== null && this.canDraw && this.tool !== 'select') this.setTool('select');
    if (this.selectedId === id) return;
    this.selectedId = id;
    this.canvas.schedule();
    this.list.schedule();
    this.applyRights();
  }

  private setTool(kind: ToolKind): void {
    this.tool = kind;
    for (const [k, btn] of this.toolButtons) btn.setAttribute('aria-pressed', String(k === this.effectiveTool));
    this.showHint();
    this.canvas.refresh();
    this.applyRights();
  }

  private showHint(): void {
    const def = TOOLS.find((t) => t.kind === this.effectiveTool);
    bindText(this.hint, this.canDraw ? (def?.hint ?? 'annotations.hint_select') : 'annotations.hint_view');
  }

  private runUndo(): void {
    this.canvas.settle();
    this.undo.undo();
  }

  private runRedo(): void {
    this.canvas.settle();
    this.undo.redo();
  }

  private deleteSelected(): boolean {
    const id = this.selectedId;
    if (id === null || this.canvas.busy) return false;
    this.undo.stopCapturing();
    const done = this.editor.remove(id);
    this.undo.stopCapturing();
    if (done) this.select(null);
    return done;
  }

  private setClosed(closed: boolean): void {
    const a = this.editor.get(this.selectedId);
    if (!a || a.kind !== 'freehand' || !this.editor.canEdit(a) || a.geometry.points.length < 3) return;
    this.undo.stopCapturing();
    this.editor.put(editAnnotation(a, { closed }));
    this.undo.stopCapturing();
  }

  private onKey(ev: KeyboardEvent): void {
    if (isTextEntry(ev.target) || ev.defaultPrevented) return;
    const mod = ev.ctrlKey || ev.metaKey;
    const key = ev.key.toLowerCase();
    if (mod && !ev.altKey && (key === 'z' || key === 'y')) {
      ev.preventDefault();
      if (!this.canDraw) return;
      if (key === 'y' || ev.shiftKey) this.runRedo();
      else this.runUndo();
      return;
    }
    if (mod || ev.altKey) return;
    if (this.canvas.handleKey(ev)) {
      ev.preventDefault();
      return;
    }
    if (ev.key === 'Delete' || ev.key === 'Backspace') {
      if (this.deleteSelected()) ev.preventDefault();
      return;
    }
    const step = ev.shiftKey ? 10 : 1;
    const nudge: Record<string, [number, number]> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const d = nudge[ev.key];
    if (d && this.canvas.nudgeSelected(d[0], d[1])) ev.preventDefault();
  }

  private applyRights(): void {
    for (const [kind, btn] of this.toolButtons) btn.disabled = kind !== 'select' && !this.canDraw;
    for (const [k, btn] of this.toolButtons) btn.setAttribute('aria-pressed', String(k === this.effectiveTool));
    this.undoBtn.disabled = !this.canDraw || !this.undo?.canUndo();
    this.redoBtn.disabled = !this.canDraw || !this.undo?.canRedo();
    const sel = this.editor.get(this.selectedId);
    const editable = !!sel && this.editor.canEdit(sel);
    this.deleteBtn.disabled = !editable;
    this.editTextBtn.hidden = !(editable && sel?.kind === 'text');
    this.closedRow.hidden = !(editable && sel?.kind === 'freehand');
    if (sel?.kind === 'freehand') this.closedToggle.checked = sel.geometry.closed === true;
    this.readOnlyNote.hidden = !sel || editable || !this.canDraw;
    this.observerNote.hidden = this.canDraw || this.selfId === null;
    // A report needs the image itself: not the demo phantom, which the server does not hold.
    this.exportBtn.hidden = !this.exports || this.image.demo || this.editor.items().length === 0;
  }

  /** The server writes the report (annotations/sr.py); the browser only saves the file. */
  private async exportReport(): Promise<void> {
    if (!this.exports) return;
    const key = this.image.key;
    const { roomId, token } = this.exports;
    const bearer = token();
    clearStatus(this.exportNote);
    this.exportBtn.disabled = true;
    try {
      const r = await fetch(`/api/rooms/${encodeURIComponent(roomId)}/annotations/${encodeURIComponent(key)}/report.dcm`, {
        headers: bearer ? { Authorization: `Bearer ${bearer}` } : {},
      });
      if (!r.ok) {
        bindText(this.exportNote, r.status === 422 ? 'annotations.export_none' : 'annotations.export_failed');
        return;
      }
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', { attrs: { href: url, download: `measurements-${key.replace(/[^A-Za-z0-9.-]/g, '_')}.dcm` } });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch {
      bindText(this.exportNote, 'annotations.export_failed');
    } finally {
      this.exportBtn.disabled = false;
    }
  }
}
