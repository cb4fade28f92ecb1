/**
 * The room's series: a thumbnail (the server renders the middle image), modality,
 * description and image count, and a warning when an image may carry burned-in text.
 * Clicking one opens it in the viewer. The list follows the room's `imaging` events;
 * thumbnails are fetched again (at most every few seconds) while a series grows.
 */
import { h, replace } from '../dom';
import { bindText } from '../i18n';
import type { SeriesRow } from './dicom';
import type { DicomWebClient } from './dicomweb';

const THUMB_REFRESH_MS = 2500;

interface Row {
  data: SeriesRow;
  burnedIn: boolean;
  li: HTMLLIElement;
  button: HTMLButtonElement;
  img: HTMLImageElement;
  count: HTMLElement;
  warn: HTMLElement;
  url: string | null;
  thumbAt: number;
  thumbCount: number;
  thumbTimer: ReturnType<typeof setTimeout> | null;
}

export class SeriesList {
  readonly el: HTMLUListElement;
  readonly empty: HTMLElement;
  private readonly rows = new Map<string, Row>();
  private openUid: string | null = null;

  constructor(
    private readonly client: DicomWebClient,
    private readonly open: (row: SeriesRow) => void,
  ) {
    this.el = h('ul', { class: 'series-list', testid: 'series-list', i18nAttrs: { 'aria-label': 'imaging.series_label' } });
    this.empty = h('p', { class: 'hint', testid: 'series-empty', i18n: 'imaging.series_empty' });
  }

  get size(): number {
    return this.rows.size;
  }

  /** The whole list from QIDO (on join and reconnect). */
  setAll(rows: readonly SeriesRow[]): void {
    for (const r of rows) this.upsert(r);
  }

  /** A series appeared or grew. */
  upsert(r: SeriesRow, burnedIn = false): void {
    let row = this.rows.get(r.seriesUid);
    if (!row) {
      row = this.newRow(r);
      this.rows.set(r.seriesUid, row);
      this.el.appendChild(row.li);
    }
    if (r.instances >= row.data.instances) row.data = { ...row.data, ...r, description: r.description || row.data.description };
    row.burnedIn ||= burnedIn;
    this.fill(row);
    this.thumb(row);
    this.empty.hidden = this.rows.size > 0;
  }

  /** Mark the series the viewer shows. */
  setOpen(seriesUid: string | null): void {
    this.openUid = seriesUid;
    for (const [uid, row] of this.rows) {
      const on = uid === seriesUid;
      row.li.dataset['open'] = String(on);
      row.button.setAttribute('aria-pressed', String(on));
    }
  }

  private newRow(data: SeriesRow): Row {
    const img = h('img', { class: 'series-thumb', attrs: { alt: '', width: 64, height: 64, decoding: 'async' } });
    const count = h('span', { class: 'series-count', testid: 'series-count' });
    const warn = h('span', { class: 'series-warn', testid: 'series-burned-in', i18n: 'imaging.series_burned_in', attrs: { hidden: true } });
    const button = h('button', {
      class: 'series-pick',
      attrs: { type: 'button', 'aria-pressed': 'false' },
      on: { click: () => this.open(this.rows.get(data.seriesUid)?.data ?? data) },
    });
    const li = h('li', { class: 'series-item', testid: 'series-item', attrs: { 'data-series': data.seriesUid } }, button);
    const row: Row = { data, burnedIn: false, li, button, img, count, warn, url: null, thumbAt: 0, thumbCount: 0, thumbTimer: null };
    li.dataset['open'] = String(data.seriesUid === this.openUid);
    return row;
  }

  private fill(row: Row): void {
    const d = row.data;
    const title = h('span', { class: 'series-title' }, d.modality || '–', d.description ? ` · ${d.description}` : '');
    bindText(row.count, 'imaging.series_count', { count: d.instances });
    row.warn.hidden = !row.burnedIn;
    row.li.dataset['instances'] = String(d.instances);
    replace(row.button, row.img, h('span', { class: 'series-text' }, title, row.count, row.warn));
  }

  /** Fetch the thumbnail (again when the series grew), not more often than every few seconds. */
  private thumb(row: Row): void {
    if (row.data.instances <= row.thumbCount || row.thumbTimer !== null) return;
    const wait = row.thumbAt + THUMB_REFRESH_MS - Date.now();
    row.thumbTimer = setTimeout(() => {
      row.thumbTimer = null;
      row.thumbAt = Date.now();
      const count = row.data.instances;
      this.client.thumbnail(row.data.studyUid, row.data.seriesUid).then(
        (blob) => {
          if (row.url) URL.revokeObjectURL(row.url);
          row.url = URL.createObjectURL(blob);
          row.img.src = row.url;
          row.thumbCount = count;
          this.thumb(row);
        },
        () => undefined,
      );
    }, Math.max(0, wait));
  }
}
