/**
 * The list of annotations on the image: kind, author, measurement and ROI statistics, in
 * drawing order. A row is rebuilt only when its value, its author's name or the language
 * changed; selecting one (click, or Enter/Space on it) selects it on the image.
 */
import { h, replace } from '../dom';
import { bindText, currentLang } from '../i18n';
import type { Editor } from './editor';
import { kindKey, measureText, statsText } from './format';
import type { Roster } from './roster';
import type { ImageInfo } from './measure';
import type { SceneImage } from './scene';
import { measureAnnotation, type Annotation } from './tools';

export interface ListDeps {
  /** The image measured on. */
  image: () => SceneImage;
  editor: Editor;
  roster: Roster;
  self: () => string | null;
  selected: () => string | null;
  select: (id: string) => void;
}

interface Row {
  li: HTMLLIElement;
  button: HTMLButtonElement;
  value: Annotation | null;
  stamp: string;
  info: ImageInfo | null;
}

export class AnnotationList {
  readonly el: HTMLUListElement;
  readonly empty: HTMLElement;
  private readonly rows = new Map<string, Row>();
  private frame = 0;

  constructor(private readonly deps: ListDeps) {
    this.el = h('ul', { class: 'annotation-list', testid: 'annotation-list', i18nAttrs: { 'aria-label': 'annotations.list_label' } });
    this.empty = h('p', { class: 'hint', i18n: 'annotations.empty' });
  }

  /** Update at the next animation frame (coalesced). */
  schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const items = this.deps.editor.items();
    const seen = new Set<string>();
    const selected = this.deps.selected();
    let prev: Element | null = null;
    for (const a of items) {
      seen.add(a.id);
      const row = this.rows.get(a.id) ?? this.newRow(a.id);
      this.fill(row, a);
      const on = a.id === selected;
      if (row.li.dataset['selected'] !== String(on)) {
        row.li.dataset['selected'] = String(on);
        row.button.setAttribute('aria-pressed', String(on));
      }
      const want: Element | null = prev ? prev.nextElementSibling : this.el.firstElementChild;
      if (want !== row.li) this.el.insertBefore(row.li, want);
      prev = row.li;
    }
    for (const [id, row] of this.rows) {
      if (seen.has(id)) continue;
      row.li.remove();
      this.rows.delete(id);
    }
    this.empty.hidden = items.length > 0;
  }

  private newRow(id: string): Row {
    const button = h('button', {
      class: 'annotation-pick',
      attrs: { type: 'button', 'aria-pressed': 'false' },
      on: { click: () => this.deps.select(id) },
    });
    const li = h('li', { class: 'annotation-item', testid: 'annotation-item', attrs: { 'data-id': id } }, button);
    const row: Row = { li, button, value: null, stamp: '', info: null };
    this.rows.set(id, row);
    return row;
  }

  private fill(row: Row, a: Annotation): void {
    const self = this.deps.self();
    const authorName = this.deps.roster.name(a.author);
    const editable = this.deps.editor.canEdit(a);
    const stamp = `${currentLang()}|${self ?? ''}|${authorName ?? ''}|${editable}`;
    const info = this.deps.image().info;
    if (row.value === a && row.stamp === stamp && row.info === info) return;
    row.value = a;
    row.stamp = stamp;
    row.info = info;
    row.li.dataset['kind'] = a.kind;
    row.li.dataset['author'] = a.author;
    row.li.dataset['editable'] = String(editable);

    const swatch = h('span', { class: 'annotation-swatch', attrs: { 'aria-hidden': 'true' } });
    swatch.style.background = a.style.color;
    const kind = h('span', { class: 'annotation-kind' });
    bindText(kind, kindKey(a));
    const author = h('span', { class: 'annotation-author' });
    if (authorName) bindText(author, 'annotations.by_author', { name: authorName });
    else bindText(author, 'annotations.author_unknown');
    const mine = a.author === self ? h('span', { class: 'hint', i18n: 'annotations.mine' }) : null;

    const m = measureAnnotation(a, info);
    const measure = measureText(a, m, info.calibration);
    const stats = statsText(m);
    const measureEl = measure ? h('span', { class: 'annotation-measure', testid: 'annotation-measure' }) : null;
    if (measureEl && measure) bindText(measureEl, measure.key, measure.args);
    const statsEl = stats ? h('span', { class: 'annotation-stats', testid: 'annotation-stats' }) : null;
    if (statsEl && stats) bindText(statsEl, stats.key, stats.args);
    const label = a.kind === 'text' ? h('span', { class: 'annotation-label' }, a.geometry.text ?? '') : null;

    replace(
      row.button,
      h('span', { class: 'annotation-head' }, swatch, kind, author, mine),
      label,
      measureEl,
      statsEl,
    );
  }
}
