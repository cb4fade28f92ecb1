/**
 * The room's DICOMweb surface (`/dicomweb/rooms/{room}`), as the viewer reads it: QIDO-RS
 * series, WADO-RS series metadata, raw frames (multipart/related, stored values little
 * endian, for window/level in the browser), rendered frames and thumbnails.
 *
 * Every call sends the participant token (`Authorization: Bearer`). Instances are immutable
 * (frames and thumbnails may come from the HTTP cache); series metadata grows while a
 * series streams in, so it is always revalidated (`cache: 'no-cache'`: a 304 is cheap).
 */
import { parseSeriesRow, type DicomJson, type SeriesRow } from './dicom';

export class DicomWebError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DicomWebError';
  }
}

const enc = encodeURIComponent;

export class DicomWebClient {
  readonly base: string;

  constructor(
    roomId: string,
    private readonly token: () => string | null,
  ) {
    this.base = `/dicomweb/rooms/${enc(roomId)}`;
  }

  private async get(path: string, accept: string, init: RequestInit = {}): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept };
    const token = this.token();
    if (token) headers['Authorization'] = `Bearer ${token}`;
    let res: Response;
    try {
      res = await fetch(this.base + path, { credentials: 'same-origin', ...init, headers });
    } catch (err) {
      if (err instanceof DOMException && err.name === 'AbortError') throw err;
      throw new DicomWebError(0, String(err));
    }
    if (!res.ok) throw new DicomWebError(res.status, res.statusText);
    return res;
  }

  private static series(study: string, series: string): string {
    return `/studies/${enc(study)}/series/${enc(series)}`;
  }

  /** Every series of the room (QIDO-RS). */
  async searchSeries(): Promise<SeriesRow[]> {
    const res = await this.get('/series', 'application/dicom+json', { cache: 'no-store' });
    const text = await res.text();
    const rows = text ? (JSON.parse(text) as DicomJson[]) : [];
    return rows.map(parseSeriesRow).filter((r): r is SeriesRow => r !== null);
  }

  /** The series metadata (one DICOM JSON object per instance). */
  async metadata(study: string, series: string, signal?: AbortSignal): Promise<DicomJson[]> {
    const res = await this.get(`${DicomWebClient.series(study, series)}/metadata`, 'application/dicom+json', {
      cache: 'no-cache',
      ...(signal ? { signal } : {}),
    });
    return (await res.json()) as DicomJson[];
  }

  /** Frame `n` (1-based) of an instance: its stored values, little endian. */
  async frame(study: string, series: string, sop: string, n: number, signal?: AbortSignal): Promise<Uint8Array> {
    const res = await this.get(
      `${DicomWebClient.series(study, series)}/instances/${enc(sop)}/frames/${n}`,
      'multipart/related; type="application/octet-stream"',
      signal ? { signal } : {},
    );
    const parts = parseMultipart(await res.arrayBuffer(), res.headers.get('Content-Type') ?? '');
    const first = parts[0];
    if (!first) throw new DicomWebError(res.status, 'no part in the answer');
    return first;
  }

  /** Frame `n` rendered by the server (colour models the browser does not convert itself). */
  async rendered(study: string, series: string, sop: string, n: number, signal?: AbortSignal): Promise<Blob> {
    const res = await this.get(
      `${DicomWebClient.series(study, series)}/instances/${enc(sop)}/frames/${n}/rendered?accept=image/jpeg&quality=95`,
      'image/jpeg',
      signal ? { signal } : {},
    );
    return res.blob();
  }

  async thumbnail(study: string, series: string): Promise<Blob> {
    const res = await this.get(`${DicomWebClient.series(study, series)}/thumbnail`, 'image/jpeg', { cache: 'no-cache' });
    return res.blob();
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  if (first === undefined) return -1;
  const last = hay.length - needle.length;
  let i = hay.indexOf(first, from);
  while (i !== -1 && i <= last) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i = hay.indexOf(first, i + 1);
  }
  return -1;
}

/**
 * The bodies of a multipart/related answer (RFC 2046): parts are delimited by
 * CRLF "--boundary"; each has headers, an empty line, then its body. The bodies are views
 * into `buffer`, not copies.
 */
export function parseMultipart(buffer: ArrayBuffer, contentType: string): Uint8Array[] {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw new DicomWebError(0, 'multipart answer without a boundary');
  const bytes = new Uint8Array(buffer);
  const te = new TextEncoder();
  const delimiter = te.encode(`\r\n--${boundary}`);
  const headerEnd = te.encode('\r\n\r\n');
  const parts: Uint8Array[] = [];
  // The first delimiter may open the body without the leading CRLF.
  let at = indexOf(bytes, delimiter.subarray(2), 0);
  while (at !== -1) {
    const after = at + delimiter.length - 2;
    if (bytes[after] === 0x2d && bytes[after + 1] === 0x2d) break; // "--": the close delimiter
    const bodyStart = indexOf(bytes, headerEnd, after);
    if (bodyStart === -1) break;
    const start = bodyStart + headerEnd.length;
    const end = indexOf(bytes, delimiter, start);
    if (end === -1) break;
    parts.push(bytes.subarray(start, end));
    at = end + 2;
  }
  return parts;
}
