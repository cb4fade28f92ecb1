/**
 * The room's images: sharing files (drop or pick files and folders), the list of series,
 * and the viewer the annotation layer draws on (viewer.ts is its Scene), with "follow me".
 *
 * The room's `imaging` events keep the list current and grow the open series; the first
 * image shared into a room without an open series opens by itself on every screen (unless
 * someone presents: then the presenter's view wins).
 */
import { h, replace } from '../dom';
import { bindText, type MsgKey } from '../i18n';
import { ServerEvent, type ImagingEvent, type JoinedPayload } from '../net/protocol';
import type { RoomSocket } from '../net/socket';
import { Roster } from '../annotations/roster';
import type { SeriesRow } from './dicom';
import { DicomWebClient } from './dicomweb';
import { FollowControl } from './follow';
import { SeriesList } from './series';
import { Batch, byPath, filesFromDrop, filesFromInput, type BatchProgress, type FileResult } from './upload';
import { Viewer } from './viewer';

const REFRESH_DEBOUNCE_MS = 150;

/** Refusal codes the server sends, with a translated explanation (else its own words). */
const REFUSALS: Record<string, MsgKey> = {
  unsupported: 'imaging.refused_unsupported',
  not_dicom: 'imaging.refused_unsupported',
  too_large: 'imaging.refused_too_large',
  payload_too_large: 'imaging.refused_too_large',
  room_full: 'imaging.refused_room_full',
  too_costly: 'imaging.refused_too_costly',
  resource_limit: 'imaging.refused_too_costly',
  pixel_budget: 'imaging.refused_too_costly',
  forbidden: 'imaging.refused_forbidden',
  unauthorized: 'imaging.refused_unauthorized',
};

const WARNINGS: Record<string, MsgKey> = {
  burned_in_annotation_possible: 'imaging.warn_burned_in',
  text_in_image: 'imaging.warn_text',
  text_in_pixels: 'imaging.warn_text',
  faces_blurred: 'imaging.warn_faces',
};

interface TestHooks {
  state(): Record<string, unknown>;
  /** [r, g, b] of the drawn canvas at image pixel positions (what the screen shows). */
  sample(points: [number, number][]): number[][];
  follow(): { presenting: boolean; following: string | null };
  uploads(): FileResult[];
}

declare global {
  interface Window {
    __consultdImaging?: TestHooks;
  }
}

export class ImagingPanel {
  readonly el: HTMLElement;
  readonly viewer: Viewer;
  readonly follow: FollowControl;
  private readonly client: DicomWebClient;
  private readonly series: SeriesList;
  private readonly roster: Roster;
  private readonly shareBox: HTMLElement;
  private readonly keepIdentity: HTMLInputElement;
  private readonly keepRow: HTMLElement;
  private readonly batchesEl: HTMLElement;
  private readonly fileInput: HTMLInputElement;
  private readonly folderInput: HTMLInputElement;
  private readonly listStatus: HTMLElement;
  private readonly batches: Batch[] = [];
  /** Every file of every batch (for the tests). */
  private readonly results: FileResult[] = [];
  private canShare = false;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  private isHost = false;

  constructor(
    private readonly socket: RoomSocket,
    private readonly roomId: string,
    private readonly token: () => string | null,
  ) {
    this.client = new DicomWebClient(roomId, token);
    this.viewer = new Viewer(this.client);
    this.roster = new Roster(socket);
    this.follow = new FollowControl(socket, this.viewer, this.roster);
    this.viewer.toolbar.appendChild(this.follow.el);
    this.series = new SeriesList(this.client, (row) => this.openSeries(row));
    this.viewer.onSeries(() => this.series.setOpen(this.viewer.series?.series ?? null));
    this.viewer.fileDrop = { over: (ev) => this.dragOver(ev), drop: (ev) => this.dropped(ev) };

    this.fileInput = h('input', {
      testid: 'imaging-file-input',
      // No `accept`: DICOM files often have no extension.
      attrs: { type: 'file', multiple: true, hidden: true },
      on: { change: () => this.picked(this.fileInput) },
    });
    this.folderInput = h('input', {
      testid: 'imaging-folder-input',
      attrs: { type: 'file', multiple: true, hidden: true, webkitdirectory: true },
      on: { change: () => this.picked(this.folderInput) },
    });
    this.keepIdentity = h('input', { testid: 'imaging-keep-identity', attrs: { type: 'checkbox', id: 'imaging-keep-identity' } });
    this.keepRow = h(
      'div',
      { class: 'switch-row', attrs: { hidden: true } },
      this.keepIdentity,
      h('label', { i18n: 'imaging.keep_identity', attrs: { for: 'imaging-keep-identity' } }),
    );
    const drop = h(
      'div',
      {
        class: 'imaging-drop',
        testid: 'imaging-drop',
        on: {
          dragover: (ev) => this.dragOver(ev),
          dragleave: () => drop.classList.remove('dragging'),
          drop: (ev) => {
            drop.classList.remove('dragging');
            this.dropped(ev);
          },
        },
      },
      h('p', { i18n: 'imaging.drop_hint' }),
      h(
        'div',
        { class: 'actions' },
        h('button', { testid: 'imaging-pick-files', i18n: 'imaging.pick_files', attrs: { type: 'button' }, on: { click: () => this.fileInput.click() } }),
        h('button', { testid: 'imaging-pick-folder', i18n: 'imaging.pick_folder', attrs: { type: 'button' }, on: { click: () => this.folderInput.click() } }),
      ),
      this.fileInput,
      this.folderInput,
    );
    this.batchesEl = h('div', { class: 'imaging-batches', testid: 'imaging-batches' });
    this.shareBox = h('div', { class: 'imaging-share', attrs: { hidden: true } }, drop, this.keepRow, h('p', { class: 'hint', i18n: 'imaging.deid_note' }), this.batchesEl);
    this.listStatus = h('p', { class: 'form-status', testid: 'series-status', attrs: { role: 'status', 'aria-live': 'polite' } });
    this.el = h(
      'section',
      { class: 'imaging panel', testid: 'imaging' },
      h('h2', { i18n: 'imaging.title' }),
      this.shareBox,
      h('h3', { i18n: 'imaging.series_title' }),
      this.listStatus,
      this.series.empty,
      this.series.el,
    );

    socket.socket.on(ServerEvent.imaging, (e) => this.onImaging(e));
    socket.onStatus((s) => {
      if (s === 'connected') for (const b of this.batches) b.resume();
    });
    window.addEventListener('online', () => {
      if (this.socket.connected) for (const b of this.batches) b.resume();
    });
    this.installHooks();
  }

  onJoined(p: Pick<JoinedPayload, 'self' | 'participants'>): void {
    this.roster.setJoined(p);
    this.follow.onJoined(p.self.id, p.self.role);
    this.setRole(p.self.role);
    void this.loadSeries();
    if (this.viewer.series) this.scheduleRefresh();
  }

  /** The host blacks out the text found in an image's pixels (every frame); the image
   *  keeps its UIDs, so everyone's viewer and annotations stay on it. */
  private async mask(item: FileResult): Promise<boolean> {
    const token = this.token();
    if (!item.sopUid || !item.textRegions?.length || !token) return false;
    const url = `/api/rooms/${encodeURIComponent(this.roomId)}/imaging/instances/${encodeURIComponent(item.sopUid)}/mask`;
    const r = await fetch(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ regions: item.textRegions }),
    });
    return r.ok;
  }

  setRole(role: string): void {
    this.isHost = role === 'host';
    this.canShare = role === 'host' || role === 'participant';
    this.shareBox.hidden = !this.canShare;
    this.keepRow.hidden = role !== 'host';
    if (role !== 'host') this.keepIdentity.checked = false;
    this.follow.setRole(role);
  }

  // ------------------------------------------------------------ series

  private async loadSeries(): Promise<void> {
    try {
      const rows = await this.client.searchSeries();
      this.series.setAll(rows);
      this.listStatus.textContent = '';
      const first = rows[0];
      if (first && !this.viewer.series && this.follow.following === null) this.openSeries(first, false);
    } catch {
      bindText(this.listStatus, 'imaging.series_failed');
    }
  }

  private openSeries(row: SeriesRow, local = true): void {
    void this.viewer.openSeries(row.studyUid, row.seriesUid, { local });
  }

  private onImaging(e: ImagingEvent): void {
    if (e?.kind !== 'instance_added' || typeof e.series_uid !== 'string') return;
    this.series.upsert(
      { studyUid: e.study_uid, seriesUid: e.series_uid, modality: e.modality ?? '', description: '', number: null, instances: e.instances },
      e.burned_in,
    );
    const open = this.viewer.series;
    if (open?.series === e.series_uid) this.scheduleRefresh();
    else if (!open && this.follow.following === null) this.openSeries({ studyUid: e.study_uid, seriesUid: e.series_uid, modality: e.modality ?? '', description: '', number: null, instances: e.instances }, false);
  }

  /** The open series grew: fetch its metadata again (coalesced, one request at a time). */
  private scheduleRefresh(): void {
    if (this.refreshTimer !== null) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      if (this.refreshing) {
        this.refreshAgain = true;
        return;
      }
      this.refreshing = this.viewer.refresh().finally(() => {
        this.refreshing = null;
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.scheduleRefresh();
        }
      });
    }, REFRESH_DEBOUNCE_MS);
  }

  // ------------------------------------------------------------ sharing

  private dragOver(ev: DragEvent): void {
    if (!this.canShare || !ev.dataTransfer?.types.includes('Files')) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
    (ev.currentTarget as HTMLElement | null)?.classList.add('dragging');
  }

  private dropped(ev: DragEvent): void {
    const dt = ev.dataTransfer;
    if (!this.canShare || !dt?.types.includes('Files')) return;
    ev.preventDefault();
    void filesFromDrop(dt).then((files) => this.share(files));
  }

  private picked(input: HTMLInputElement): void {
    const files = filesFromInput(input);
    input.value = '';
    this.share(files);
  }

  private share(files: { file: File; path: string }[]): void {
    if (!files.length || !this.canShare) return;
    files.sort(byPath);
    const view = new BatchView(this.isHost ? (item) => this.mask(item) : null);
    this.batchesEl.prepend(view.el);
    const batch = new Batch(
      files,
      { roomId: this.roomId, token: this.token, keepIdentity: () => this.keepIdentity.checked },
      () => this.socket.connected && navigator.onLine !== false,
      (b, item) => view.update(b.progress, item),
    );
    this.batches.push(batch);
    this.results.push(...batch.items.map((it) => it.result));
    view.update(batch.progress, null);
    void batch.run().then(() => {
      const i = this.batches.indexOf(batch);
      if (i >= 0) this.batches.splice(i, 1);
    });
  }

  // ------------------------------------------------------------ tests

  private installHooks(): void {
    if (window.__consultdTestHooks !== true) return;
    window.__consultdImaging = {
      state: () => this.viewer.debugState(),
      sample: (points) => {
        const canvas = document.querySelector<HTMLCanvasElement>('[data-testid="annotation-canvas"]');
        const ctx = canvas?.getContext('2d');
        const img = this.viewer.image();
        if (!canvas || !ctx) return [];
        const r = canvas.getBoundingClientRect();
        const v = this.viewer.view();
        const fit = Math.min(r.width / img.width, r.height / img.height) * v.zoom;
        const sx = canvas.width / (r.width || 1);
        return points.map(([x, y]) => {
          const cx = r.width / 2 + fit * (x - img.width / 2 + v.panX);
          const cy = r.height / 2 + fit * (y - img.height / 2 + v.panY);
          const d = ctx.getImageData(Math.floor(cx * sx), Math.floor(cy * sx), 1, 1).data;
          return [d[0] ?? -1, d[1] ?? -1, d[2] ?? -1];
        });
      },
      follow: () => ({ presenting: this.follow.isPresenting, following: this.follow.following }),
      uploads: () => this.results.map((r) => ({ ...r })),
    };
  }

}

/** One batch: a progress bar, counts, and the files refused or with warnings. */
class BatchView {
  readonly el: HTMLElement;
  private readonly bar: HTMLProgressElement;
  private readonly summary: HTMLElement;
  private readonly problems: HTMLUListElement;
  private readonly shown = new Set<FileResult>();

  constructor(private readonly mask: ((item: FileResult) => Promise<boolean>) | null) {
    this.bar = h('progress', { class: 'imaging-progress', testid: 'imaging-progress', attrs: { max: 1, value: 0 } });
    this.summary = h('p', { class: 'imaging-summary', testid: 'imaging-summary', attrs: { role: 'status', 'aria-live': 'polite' } });
    this.problems = h('ul', { class: 'imaging-problems', testid: 'imaging-problems' });
    this.el = h('div', { class: 'imaging-batch', testid: 'imaging-batch' }, this.bar, this.summary, this.problems);
  }

  update(p: BatchProgress, item: FileResult | null): void {
    this.bar.max = Math.max(1, p.bytes);
    this.bar.value = p.finished ? this.bar.max : p.bytesDone;
    this.el.dataset['finished'] = String(p.finished);
    const key: MsgKey = p.paused ? 'imaging.batch_paused' : p.finished ? 'imaging.batch_done' : 'imaging.batch_progress';
    bindText(this.summary, key, { done: p.done, total: p.total, sent: p.sent, skipped: p.skipped, refused: p.refused });
    if (item && !this.shown.has(item) && (item.state === 'refused' || item.state === 'failed' || ((item.state === 'sent' || item.state === 'skipped') && (item.warnings.length || item.burnedIn)))) {
      this.shown.add(item);
      this.problems.appendChild(problemRow(item, this.mask));
    }
  }
}

function problemRow(item: FileResult, mask: ((item: FileResult) => Promise<boolean>) | null): HTMLLIElement {
  const refused = item.state === 'refused' || item.state === 'failed';
  const li = h('li', { class: refused ? 'imaging-refused' : 'imaging-warning', testid: refused ? 'imaging-refused' : 'imaging-warning', attrs: { 'data-code': item.code ?? '' } });
  const name = h('span', { class: 'imaging-file' }, item.name);
  if (refused) {
    const key = item.code ? REFUSALS[item.code] : undefined;
    // Our explanation when we know the code, else the server's own words (in English;
    // they stay available as the tooltip either way).
    const why = key ? h('span', { class: 'imaging-why', i18n: key }) : h('span', { class: 'imaging-why' }, item.reason || item.code || '');
    if (item.reason) why.title = item.reason;
    replace(li, name, ' ', h('span', { i18n: 'imaging.refused' }), ' ', why);
    return li;
  }
  const codes = [...item.warnings];
  if (item.burnedIn && !codes.includes('burned_in_annotation_possible') && !codes.includes('text_in_image')) codes.push('burned_in_annotation_possible');
  replace(li, name, ' ', ...codes.map((w) => (WARNINGS[w] ? h('span', { class: 'imaging-why', i18n: WARNINGS[w] }) : h('span', {}, w))));
  if (mask && item.textRegions?.length) {
    const button = h('button', { class: 'imaging-mask', testid: 'imaging-mask', attrs: { type: 'button' }, i18n: 'imaging.mask_text' });
    button.addEventListener('click', () => {
      button.setAttribute('disabled', '');
      void mask(item).then((ok) => {
        button.replaceWith(h('span', { class: 'imaging-why', testid: ok ? 'imaging-masked' : 'imaging-mask-failed', i18n: ok ? 'imaging.masked' : 'imaging.mask_failed' }));
      });
    });
    li.append(' ', button);
  }
  return li;
}
