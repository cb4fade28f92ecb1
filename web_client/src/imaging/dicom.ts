/**
 * Reading the DICOM JSON model (PS3.18 F.2) the server answers with: QIDO rows and series
 * metadata. Only what the viewer needs, typed; everything else stays in the JSON.
 *
 * Values are read defensively (the server built them, but a file's odd values pass through):
 * numbers may come as numbers or numeric strings, multi-valued attributes as arrays.
 */

export type DicomAttr = { vr?: string; Value?: unknown[]; BulkDataURI?: string };
export type DicomJson = Record<string, DicomAttr | undefined>;

export const TAG = {
  studyUid: '0020000D',
  seriesUid: '0020000E',
  sopUid: '00080018',
  sopClassUid: '00080016',
  modality: '00080060',
  seriesDescription: '0008103E',
  seriesNumber: '00200011',
  seriesInstances: '00201209',
  instanceNumber: '00200013',
  position: '00200032',
  orientation: '00200037',
  samples: '00280002',
  photometric: '00280004',
  frames: '00280008',
  rows: '00280010',
  columns: '00280011',
  pixelSpacing: '00280030',
  imagerPixelSpacing: '00181164',
  bitsAllocated: '00280100',
  bitsStored: '00280101',
  pixelRepresentation: '00280103',
  windowCenter: '00281050',
  windowWidth: '00281051',
  rescaleIntercept: '00281052',
  rescaleSlope: '00281053',
  rescaleType: '00281054',
  burnedIn: '00280301',
  sharedGroups: '52009229',
  perFrameGroups: '52009230',
  pixelMeasures: '00289110',
  valueTransform: '00289145',
  voiGroup: '00289132',
} as const;

function values(ds: DicomJson | undefined, tag: string): unknown[] | null {
  const v = ds?.[tag]?.Value;
  return Array.isArray(v) && v.length > 0 ? v : null;
}

export function str(ds: DicomJson | undefined, tag: string): string | null {
  const v = values(ds, tag)?.[0];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

function toNumber(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

export function num(ds: DicomJson | undefined, tag: string): number | null {
  return toNumber(values(ds, tag)?.[0]);
}

export function nums(ds: DicomJson | undefined, tag: string): number[] | null {
  const v = values(ds, tag);
  if (!v) return null;
  const out = v.map(toNumber);
  return out.every((n): n is number => n !== null) ? out : null;
}

/** The first item of a sequence. */
function item(ds: DicomJson | undefined, tag: string): DicomJson | undefined {
  const v = values(ds, tag)?.[0];
  return typeof v === 'object' && v !== null ? (v as DicomJson) : undefined;
}

/**
 * An attribute at the top level or, for enhanced multi-frame objects, in the shared
 * functional groups (else the first frame's): `group` is the functional group sequence.
 */
function grouped<T>(ds: DicomJson, group: string, read: (d: DicomJson | undefined) => T | null): T | null {
  return read(ds) ?? read(item(item(ds, TAG.sharedGroups), group)) ?? read(item(item(ds, TAG.perFrameGroups), group));
}

function pair(v: number[] | null): [number, number] | null {
  return v && v.length >= 2 && v[0]! > 0 && v[1]! > 0 ? [v[0]!, v[1]!] : null;
}

/** One instance, as the viewer uses it. */
export interface InstanceMeta {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  modality: string;
  rows: number;
  columns: number;
  frames: number;
  samples: number;
  photometric: string;
  bitsAllocated: number;
  pixelRepresentation: number;
  slope: number;
  intercept: number;
  /** Rescale Type, or "HU" for CT. */
  unit: string;
  windowCenter: number | null;
  windowWidth: number | null;
  /** [row spacing, column spacing] in mm. */
  pixelSpacing: [number, number] | null;
  imagerPixelSpacing: [number, number] | null;
  instanceNumber: number | null;
  position: number[] | null;
  orientation: number[] | null;
  burnedIn: boolean;
}

export function parseInstance(ds: DicomJson): InstanceMeta | null {
  const studyUid = str(ds, TAG.studyUid);
  const seriesUid = str(ds, TAG.seriesUid);
  const sopUid = str(ds, TAG.sopUid);
  const rows = num(ds, TAG.rows);
  const columns = num(ds, TAG.columns);
  if (!studyUid || !seriesUid || !sopUid || !rows || !columns) return null;
  const modality = str(ds, TAG.modality) ?? '';
  const rescale = (d: DicomJson | undefined): [number, number] | null => {
    const s = num(d, TAG.rescaleSlope);
    const i = num(d, TAG.rescaleIntercept);
    return s !== null || i !== null ? [s ?? 1, i ?? 0] : null;
  };
  const [slope, intercept] = grouped(ds, TAG.valueTransform, rescale) ?? [1, 0];
  const window = grouped(ds, TAG.voiGroup, (d) => {
    const c = num(d, TAG.windowCenter);
    const w = num(d, TAG.windowWidth);
    return c !== null && w !== null && w > 0 ? [c, w] : null;
  });
  const rescaleType = grouped(ds, TAG.valueTransform, (d) => str(d, TAG.rescaleType));
  return {
    studyUid,
    seriesUid,
    sopUid,
    modality,
    rows,
    columns,
    frames: Math.max(1, num(ds, TAG.frames) ?? 1),
    samples: num(ds, TAG.samples) ?? 1,
    photometric: (str(ds, TAG.photometric) ?? 'MONOCHROME2').trim().toUpperCase(),
    bitsAllocated: num(ds, TAG.bitsAllocated) ?? 16,
    pixelRepresentation: num(ds, TAG.pixelRepresentation) ?? 0,
    slope: slope || 1,
    intercept,
    unit: modality === 'CT' ? 'HU' : rescaleType && rescaleType !== 'US' ? rescaleType : '',
    windowCenter: window?.[0] ?? null,
    windowWidth: window?.[1] ?? null,
    pixelSpacing: pair(grouped(ds, TAG.pixelMeasures, (d) => nums(d, TAG.pixelSpacing))),
    imagerPixelSpacing: pair(nums(ds, TAG.imagerPixelSpacing)),
    instanceNumber: num(ds, TAG.instanceNumber),
    position: nums(ds, TAG.position),
    orientation: nums(ds, TAG.orientation),
    burnedIn: (str(ds, TAG.burnedIn) ?? '').toUpperCase() === 'YES',
  };
}

/** Distance along the slice normal (for sorting a stack by position). */
function along(m: InstanceMeta): number | null {
  const p = m.position;
  const o = m.orientation;
  if (!p || p.length < 3 || !o || o.length < 6) return null;
  const [a, b, c, d, e, f] = o as [number, number, number, number, number, number];
  const n = [b * f - c * e, c * d - a * f, a * e - b * d] as const;
  return p[0]! * n[0] + p[1]! * n[1] + p[2]! * n[2];
}

/** Stack order, as the server's index: Instance Number, then position along the normal, then UID. */
export function sortInstances(list: InstanceMeta[]): InstanceMeta[] {
  const key = (m: InstanceMeta): [number, number, string] => [m.instanceNumber ?? 1e12, along(m) ?? 0, m.sopUid];
  return list
    .map((m) => ({ m, k: key(m) }))
    .sort((x, y) => x.k[0] - y.k[0] || x.k[1] - y.k[1] || (x.k[2] < y.k[2] ? -1 : x.k[2] > y.k[2] ? 1 : 0))
    .map((x) => x.m);
}

/** A series as QIDO lists it. */
export interface SeriesRow {
  studyUid: string;
  seriesUid: string;
  modality: string;
  description: string;
  number: number | null;
  instances: number;
}

export function parseSeriesRow(ds: DicomJson): SeriesRow | null {
  const studyUid = str(ds, TAG.studyUid);
  const seriesUid = str(ds, TAG.seriesUid);
  if (!studyUid || !seriesUid) return null;
  return {
    studyUid,
    seriesUid,
    modality: str(ds, TAG.modality) ?? '',
    description: str(ds, TAG.seriesDescription) ?? '',
    number: num(ds, TAG.seriesNumber),
    instances: num(ds, TAG.seriesInstances) ?? 0,
  };
}
