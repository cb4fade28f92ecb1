/**
 * Sharing files into the room: DICOM files, whole folders of them, and lab images or
 * photos (JPEG, PNG, WebP; the server makes them secondary-capture instances).
 *
 * One file per request (`POST /api/rooms/{room}/imaging/files`, the participant token as
 * Bearer), three at a time. Before sending a file its SHA-256 is asked for
 * (`GET .../imaging/files/{sha256}`): a file the room already holds is skipped, so a batch
 * interrupted by a network drop resumes where it stopped once the connection is back (the
 * files still waiting are retried; those that made it are found by their hash).
 *
 * Each file ends as: sent (with the server's warnings: burned-in text, faces blurred),
 * already there, or refused with the server's reason; a batch shows its progress in bytes.
 */

export interface UploadTarget {
  roomId: string;
  token: () => string | null;
  keepIdentity: () => boolean;
}

export type FileState = 'waiting' | 'hashing' | 'sending' | 'sent' | 'skipped' | 'refused' | 'failed';

export interface FileResult {
  name: string;
  size: number;
  state: FileState;
  /** Refusal: the server's code and reason. */
  code?: string;
  reason?: string;
  warnings: string[];
  burnedIn: boolean;
  /** Where it went (sent or skipped). */
  seriesUid?: string;
  studyUid?: string;
  sopUid?: string;
  /** Where text was found in the pixels (x, y, w, h): the host may mask it. */
  textRegions?: number[][];
}

export interface BatchProgress {
  total: number;
  bytes: number;
  bytesDone: number;
  done: number;
  sent: number;
  skipped: number;
  refused: number;
  /** Waiting for the connection to come back. */
  paused: boolean;
  finished: boolean;
}

interface Item {
  file: File;
  result: FileResult;
  /** Bytes of this file counted as done so far. */
  counted: number;
  /** The server's id of this file's resumable upload, while one is open. */
  upload?: string | undefined;
}

const PARALLEL = 3;
const RETRY_MS = 3000;
/** Files larger than this go in resumable chunks of CHUNK_BYTES. */
const CHUNKED_FROM = 16 * 1024 * 1024;
const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Files that are no use to send: hidden files and a media's DICOMDIR. Anything else goes
 * (DICOM files often have no extension) and the server says what it refuses.
 */
export function wanted(file: File, path: string): boolean {
  const name = path.split('/').pop() || file.name;
  return !(name.startsWith('.') || name.toUpperCase() === 'DICOMDIR' || name === 'Thumbs.db');
}

async function sha256Hex(file: File): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

class NetworkError extends Error {}

interface Answer {
  status: number;
  body: Record<string, unknown> | null;
}

function parse(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** One upload batch (a drop, a picker choice). */
export class Batch {
  readonly items: Item[];
  private paused = false;
  private resumeWaiters: (() => void)[] = [];
  private finishedFlag = false;

  constructor(
    files: readonly { file: File; path: string }[],
    private readonly target: UploadTarget,
    private readonly online: () => boolean,
    private readonly changed: (b: Batch, item: FileResult | null) => void,
  ) {
    this.items = files.map(({ file, path }) => ({ file, counted: 0, result: { name: path || file.name, size: file.size, state: 'waiting', warnings: [], burnedIn: false } }));
  }

  get progress(): BatchProgress {
    let bytes = 0;
    let bytesDone = 0;
    let done = 0;
    let sent = 0;
    let skipped = 0;
    let refused = 0;
    for (const it of this.items) {
      bytes += it.file.size;
      bytesDone += it.counted;
      const s = it.result.state;
      if (s === 'sent' || s === 'skipped' || s === 'refused' || s === 'failed') done += 1;
      if (s === 'sent') sent += 1;
      if (s === 'skipped') skipped += 1;
      if (s === 'refused' || s === 'failed') refused += 1;
    }
    return { total: this.items.length, bytes, bytesDone, done, sent, skipped, refused, paused: this.paused, finished: this.finishedFlag };
  }

  /** The connection is back: go on with what was waiting. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const waiters = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const w of waiters) w();
    this.changed(this, null);
  }

  async run(): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.items.length) {
        const it = this.items[next++]!;
        await this.one(it);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, this.items.length) }, worker));
    this.finishedFlag = true;
    this.changed(this, null);
  }

  private async waitOnline(): Promise<void> {
    if (!this.paused) {
      this.paused = true;
      this.changed(this, null);
    }
    await new Promise<void>((resolve) => {
      this.resumeWaiters.push(resolve);
      // A failure without a disconnect (a proxy's 502): try again when the socket is up.
      const poll = (): void => {
        if (!this.paused) return;
        if (this.online()) this.resume();
        else setTimeout(poll, RETRY_MS);
      };
      setTimeout(poll, RETRY_MS);
    });
  }

  private set(it: Item, patch: Partial<FileResult>, counted?: number): void {
    Object.assign(it.result, patch);
    if (counted !== undefined) it.counted = counted;
    this.changed(this, it.result);
  }

  private async one(it: Item): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.paused || !this.online()) await this.waitOnline();
      try {
        this.set(it, { state: 'hashing' });
        const hash = await sha256Hex(it.file);
        const known = await this.known(hash);
        if (known) {
          this.set(it, { state: 'skipped', ...where(known) }, it.file.size);
          return;
        }
        if (it.upload === undefined) this.set(it, { state: 'sending' }, 0);
        const answer = it.file.size > CHUNKED_FROM ? await this.sendChunked(it) : await this.send(it);
        this.settle(it, answer);
        return;
      } catch (err) {
        if (!(err instanceof NetworkError)) {
          this.set(it, { state: 'failed', code: 'client_error', reason: String(err) }, it.file.size);
          return;
        }
        // Offline or the server went away: keep the file and retry once we are back.
        this.set(it, { state: 'waiting' }, 0);
        if (attempt >= 1000) return;
        await this.waitOnline();
      }
    }
  }

  private settle(it: Item, { status, body }: Answer): void {
    if (status === 200 && body?.['ok'] === true) {
      const warnings = Array.isArray(body['warnings']) ? body['warnings'].filter((w): w is string => typeof w === 'string') : [];
      const state: FileState = body['duplicate'] === true ? 'skipped' : 'sent';
      this.set(it, { state, warnings, burnedIn: body['burned_in'] === true, ...where(body) }, it.file.size);
      return;
    }
    if (status >= 500 && status !== 507) throw new NetworkError(`server answered ${status}`);
    let code = typeof body?.['code'] === 'string' ? (body['code'] as string) : '';
    let reason = typeof body?.['reason'] === 'string' ? (body['reason'] as string) : '';
    const error = body?.['error'];
    if (!code && typeof error === 'object' && error !== null) {
      const e = error as { code?: unknown; message?: unknown };
      code = typeof e.code === 'string' ? e.code : '';
      reason = typeof e.message === 'string' ? e.message : '';
    }
    this.set(it, { state: 'refused', code: code || `http_${status}`, reason }, it.file.size);
  }

  private headers(): Record<string, string> {
    const token = this.target.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  private base(): string {
    return `/api/rooms/${encodeURIComponent(this.target.roomId)}/imaging/files`;
  }

  private async known(hash: string): Promise<Record<string, unknown> | null> {
    let res: Response;
    try {
      res = await fetch(`${this.base()}/${hash}`, { headers: this.headers(), credentials: 'same-origin', cache: 'no-store' });
    } catch (err) {
      throw new NetworkError(String(err));
    }
    if (res.status === 200) return parse(await res.text());
    if (res.status >= 500) throw new NetworkError(`server answered ${res.status}`);
    return null;
  }

  /** A large file in chunks (`…/imaging/uploads`): after a dropped connection it goes on
   *  from the offset the server holds instead of starting over. */
  private async sendChunked(it: Item): Promise<Answer> {
    const uploads = `/api/rooms/${encodeURIComponent(this.target.roomId)}/imaging/uploads`;
    const json = { ...this.headers(), 'Content-Type': 'application/json' };
    const call = async (url: string, init: RequestInit): Promise<Answer> => {
      let res: Response;
      try {
        res = await fetch(url, { ...init, credentials: 'same-origin', cache: 'no-store' });
      } catch (err) {
        throw new NetworkError(String(err));
      }
      return { status: res.status, body: parse(await res.text()) };
    };
    let offset = 0;
    if (it.upload !== undefined) {
      const where = await call(`${uploads}/${it.upload}`, { headers: this.headers() });
      if (where.status === 200 && typeof where.body?.['offset'] === 'number') offset = where.body['offset'] as number;
      else it.upload = undefined; // finished or forgotten (a restart): start again
    }
    if (it.upload === undefined) {
      const keep = this.target.keepIdentity() ? '?keep_identity=true' : '';
      const opened = await call(uploads + keep, { method: 'POST', headers: json, body: JSON.stringify({ size: it.file.size }) });
      if (opened.status !== 201 || typeof opened.body?.['upload_id'] !== 'string') return opened;
      it.upload = opened.body['upload_id'] as string;
      offset = 0;
    }
    for (;;) {
      const chunk = it.file.slice(offset, offset + CHUNK_BYTES);
      const answer = await call(`${uploads}/${it.upload}?offset=${offset}`, {
        method: 'PATCH',
        headers: { ...this.headers(), 'Content-Type': 'application/octet-stream' },
        body: chunk,
      });
      if (answer.status !== 200 || typeof answer.body?.['offset'] !== 'number') {
        it.upload = undefined;
        return answer; // the outcome of the last chunk, or an error
      }
      offset = answer.body['offset'] as number;
      this.set(it, {}, Math.floor(offset * 0.95));
    }
  }

  /** POST the file (XHR: upload progress events, which fetch does not give). */
  private send(it: Item): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const keep = this.target.keepIdentity() ? '?keep_identity=true' : '';
      xhr.open('POST', this.base() + keep);
      for (const [k, v] of Object.entries(this.headers())) xhr.setRequestHeader(k, v);
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.onprogress = (ev) => {
        // Counted up to 95% while sending: the server still reads and stores the file.
        if (ev.lengthComputable) this.set(it, {}, Math.floor((ev.loaded / Math.max(1, ev.total)) * it.file.size * 0.95));
      };
      xhr.onload = () => resolve({ status: xhr.status, body: parse(xhr.responseText) });
      xhr.onerror = () => reject(new NetworkError('network error'));
      xhr.onabort = () => reject(new NetworkError('aborted'));
      xhr.send(it.file);
    });
  }
}

function where(body: Record<string, unknown>): Partial<FileResult> {
  const s = (k: string): string | undefined => (typeof body[k] === 'string' ? (body[k] as string) : undefined);
  const out: Partial<FileResult> = {};
  const study = s('study_uid');
  const series = s('series_uid');
  const sop = s('sop_uid');
  if (study) out.studyUid = study;
  if (series) out.seriesUid = series;
  if (sop) out.sopUid = sop;
  const regions = body['text_regions'];
  if (Array.isArray(regions) && regions.length) out.textRegions = regions as number[][];
  return out;
}

// ---------------------------------------------------------------- collecting files

/** Files from a drop: files and folders (recursively, through the entries API). */
export async function filesFromDrop(dt: DataTransfer): Promise<{ file: File; path: string }[]> {
  const entries: FileSystemEntry[] = [];
  const loose: File[] = [];
  for (const item of Array.from(dt.items)) {
    if (item.kind !== 'file') continue;
    const entry = item.webkitGetAsEntry?.();
    if (entry) entries.push(entry);
    else {
      const f = item.getAsFile();
      if (f) loose.push(f);
    }
  }
  if (!entries.length && !loose.length) for (const f of Array.from(dt.files)) loose.push(f);
  const out: { file: File; path: string }[] = loose.map((file) => ({ file, path: file.name }));
  for (const e of entries) await walk(e, out);
  return out.filter(({ file, path }) => wanted(file, path));
}

async function walk(entry: FileSystemEntry, out: { file: File; path: string }[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File | null>((resolve) => (entry as FileSystemFileEntry).file(resolve, () => resolve(null)));
    if (file) out.push({ file, path: entry.fullPath.replace(/^\//, '') });
    return;
  }
  if (!entry.isDirectory) return;
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  // readEntries answers in chunks (100 at a time in Chromium) until an empty one.
  for (;;) {
    const chunk = await new Promise<FileSystemEntry[]>((resolve) => reader.readEntries(resolve, () => resolve([])));
    if (!chunk.length) break;
    for (const child of chunk) await walk(child, out);
  }
}

/** Files from a file input (a folder picker gives their relative paths). */
export function filesFromInput(input: HTMLInputElement): { file: File; path: string }[] {
  return Array.from(input.files ?? [])
    .map((file) => ({ file, path: file.webkitRelativePath || file.name }))
    .filter(({ file, path }) => wanted(file, path));
}

/** Natural order of paths (slice 2 before slice 10). */
export function byPath(a: { path: string }, b: { path: string }): number {
  return a.path.localeCompare(b.path, undefined, { numeric: true });
}
