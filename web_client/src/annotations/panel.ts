/**
 * The room's annotation layer: tools, the canvas, undo/redo of one's own strokes and the
 * list of annotations with their measurements. Observers see everything but cannot draw.
 */
import * as Y from 'yjs';
import { h, replace } from '../dom';
import { bindText, currentLang, onLanguageChanged, type MsgArgs, type MsgKey } from '../i18n';
import type { RoomSocket } from '../net/socket';
import { AnnotationCanvas } from './canvas';
import { AnnotationDoc, LOCAL } from './doc';
import { DEMO_IMAGE, isAnnotation, measure, type Annotation, type ToolKind } from './tools';

const TOOLS: { kind: ToolKind; testid: string; key: MsgKey }[] = [
  { kind: 'line', testid: 'tool-line', key: 'annotations.tool_line' },
  { kind: 'rectangle', testid: 'tool-rect', key: 'annotations.tool_rect' },
  { kind: 'freehand', testid: 'tool-freehand', key: 'annotations.tool_freehand' },
];

const KIND_KEYS: Record<string, MsgKey> = {
  line: 'annotations.kind_line',
  rectangle: 'annotations.kind_rectangle',
  freehand: 'annotations.kind_freehand',
};

export class AnnotationPanel {
  readonly el: HTMLElement;
  readonly doc: AnnotationDoc;
  private readonly canvas: AnnotationCanvas;
  private undo: Y.UndoManager;
  private readonly toolButtons = new Map<ToolKind, HTMLButtonElement>();
  private readonly undoBtn: HTMLButtonElement;
  private readonly redoBtn: HTMLButtonElement;
  private readonly list: HTMLUListElement;
  private readonly empty: HTMLElement;
  private readonly observerNote: HTMLElement;
  private tool: ToolKind = 'line';
  private canDraw = false;
  private selfId: string | null = null;
  private listFrame = 0;

  constructor(socket: RoomSocket) {
    this.doc = new AnnotationDoc(socket, DEMO_IMAGE.key);
    this.canvas = new AnnotationCanvas({
      doc: this.doc,
      self: () => this.selfId,
      tool: () => (this.canDraw ? this.tool : null),
      onStrokeBoundary: () => this.undo.stopCapturing(),
    });
    const toolbar = h('div', {
      class: 'annotation-tools actions',
      attrs: { role: 'toolbar', style: 'display:flex;flex-wrap:wrap;gap:0.4rem;margin-bottom:0.5rem' },
      i18nAttrs: { 'aria-label': 'annotations.tools_label' },
    });
    for (const t of TOOLS) {
      const btn = h('button', {
        testid: t.testid,
        i18n: t.key,
        attrs: { type: 'button', 'aria-pressed': 'false', 'data-tool': t.kind },
        on: { click: () => this.setTool(t.kind) },
      });
      this.toolButtons.set(t.kind, btn);
      toolbar.appendChild(btn);
    }
    this.undoBtn = h('button', { testid: 'undo', i18n: 'annotations.undo', attrs: { type: 'button' }, on: { click: () => this.undo.undo() } });
    this.redoBtn = h('button', { testid: 'redo', i18n: 'annotations.redo', attrs: { type: 'button' }, on: { click: () => this.undo.redo() } });
    toolbar.append(this.undoBtn, this.redoBtn);

    this.list = h('ul', {
      class: 'annotation-list',
      testid: 'annotation-list',
      attrs: { style: 'list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:0.25rem' },
      i18nAttrs: { 'aria-label': 'annotations.list_label' },
    });
    this.empty = h('p', { class: 'hint', i18n: 'annotations.empty' });
    this.observerNote = h('p', { class: 'hint', testid: 'annotation-observer-note', i18n: 'annotations.observer_note', attrs: { hidden: true } });

    this.el = h(
      'section',
      { class: 'annotations panel', testid: 'annotations', attrs: { style: 'grid-column:1 / -1' } },
      h('h2', { i18n: 'annotations.title' }),
      h('p', { class: 'hint', testid: 'annotation-calibration', i18n: ['annotations.calibration', { mm: DEMO_IMAGE.pixelSpacing }] }),
      toolbar,
      this.observerNote,
      h(
        'div',
        { attrs: { style: 'display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start' } },
        h('div', { attrs: { style: 'flex:1 1 320px;max-width:512px' } }, this.canvas.el),
        h('div', { attrs: { style: 'flex:1 1 14rem;min-width:0' } }, h('h3', { i18n: 'annotations.list_title' }), this.empty, this.list),
      ),
    );

    this.undo = this.bindDoc();
    this.doc.onReset(() => {
      this.canvas.cancelStroke();
      this.undo.destroy();
      this.undo = this.bindDoc();
      this.changed();
    });
    onLanguageChanged(() => this.scheduleList());
    this.setTool('line');
    this.applyRights();
  }

  /** Every `joined`: who we are, what we may do, and a fresh sync. */
  onJoined(selfId: string, role: string): void {
    this.selfId = selfId;
    this.setRole(role);
    this.doc.onJoined();
    this.scheduleList();
  }

  setRole(role: string): void {
    this.canDraw = role === 'host' || role === 'participant';
    this.doc.setCanWrite(this.canDraw);
    if (!this.canDraw) this.canvas.cancelStroke();
    this.applyRights();
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
    this.canvas.schedule();
    this.scheduleList();
  }

  private setTool(kind: ToolKind): void {
    this.tool = kind;
    for (const [k, btn] of this.toolButtons) {
      btn.setAttribute('aria-pressed', String(k === kind));
      btn.style.outline = k === kind ? '2px solid currentColor' : '';
      btn.style.fontWeight = k === kind ? '700' : '';
    }
  }

  private applyRights(): void {
    for (const btn of this.toolButtons.values()) btn.disabled = !this.canDraw;
    this.undoBtn.disabled = !this.canDraw || !this.undo?.canUndo();
    this.redoBtn.disabled = !this.canDraw || !this.undo?.canRedo();
    this.observerNote.hidden = this.canDraw || this.selfId === null;
    this.canvas.el.style.cursor = this.canDraw ? 'crosshair' : 'default';
  }

  private scheduleList(): void {
    if (this.listFrame) return;
    this.listFrame = requestAnimationFrame(() => {
      this.listFrame = 0;
      this.renderList();
    });
  }

  private renderList(): void {
    const items: Annotation[] = [];
    this.doc.map.forEach((v) => {
      if (isAnnotation(v)) items.push(v);
    });
    items.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
    const nf = new Intl.NumberFormat(currentLang(), { maximumFractionDigits: 1, minimumFractionDigits: 1 });
    replace(
      this.list,
      ...items.map((a) => {
        const kind = h('span', { class: 'annotation-kind', attrs: { style: 'font-weight:600' } });
        bindText(kind, KIND_KEYS[a.kind] ?? 'annotations.kind_generic');
        const m = measure(a);
        let key: MsgKey | null = null;
        let args: MsgArgs = {};
        if (m.lengthMm !== undefined) {
          key = 'annotations.measure_length';
          args = { px: nf.format(m.lengthPx ?? 0), mm: nf.format(m.lengthMm) };
        } else if (m.areaMm2 !== undefined) {
          key = 'annotations.measure_rect';
          args = { w: nf.format(m.widthMm ?? 0), h: nf.format(m.heightMm ?? 0), area: nf.format(m.areaMm2) };
        }
        const value = h('span', { class: 'annotation-measure', testid: 'annotation-measure' });
        if (key) bindText(value, key, args);
        const mine = a.author === this.selfId ? h('span', { class: 'hint', i18n: 'annotations.mine' }) : null;
        return h(
          'li',
          {
            class: 'annotation-item',
            testid: 'annotation-item',
            attrs: { 'data-id': a.id, 'data-kind': a.kind, 'data-author': a.author, style: 'display:flex;flex-wrap:wrap;gap:0.4rem;align-items:center' },
          },
          h('span', {
            attrs: {
              'aria-hidden': 'true',
              style: `display:inline-block;width:0.8rem;height:0.8rem;border-radius:50%;background:${a.style.color}`,
            },
          }),
          kind,
          value,
          mine,
        );
      }),
    );
    this.empty.hidden = items.length > 0;
  }
}
