/**
 * Typed fetch wrapper for the consultd HTTP API (docs/protocol.md, "HTTP API").
 * JSON in, JSON out, same-origin cookies; every failure is thrown as an ApiError.
 */
import type {
  Admission,
  AuditEvent,
  CreateCodeBody,
  CreateRoomBody,
  ErrorBody,
  Invite,
  LoginBody,
  PatchRoomBody,
  RedeemBody,
  RegisterBody,
  Room,
  ShareCode,
  User,
} from './protocol';

/** A failed request. `code` is the server's error code, or `network` / `bad_response`. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown[];
  readonly retryAfterS: number | null;

  constructor(code: string, message: string, status: number, details: unknown[] = [], retryAfterS: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.details = details;
    this.retryAfterS = retryAfterS;
  }
}

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface RequestOptions {
  /** A participant token, sent as `Authorization: Bearer` (browsers normally rely on the cookie). */
  token?: string | null;
  signal?: AbortSignal;
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false;
  const err = (value as { error: unknown }).error;
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string';
}

const STATUS_CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  410: 'gone',
  413: 'payload_too_large',
  422: 'validation_error',
  423: 'locked',
  429: 'rate_limited',
};

export async function request<T>(method: Method, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    // State-changing requests always carry a JSON body (protocol: `{}` when there is nothing to say).
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  if (opts.token) headers['Authorization'] = `Bearer ${opts.token}`;
  if (opts.signal) init.signal = opts.signal;

  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError('network', String(err), 0);
  }
  if (res.status === 204) return undefined as T;

  let data: unknown = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const retry = res.headers.get('Retry-After');
    const retryAfterS = retry !== null && /^\d+$/.test(retry) ? Number(retry) : null;
    if (isErrorBody(data)) {
      const e = data.error;
      throw new ApiError(e.code, e.message ?? '', res.status, e.details ?? [], retryAfterS);
    }
    throw new ApiError(STATUS_CODES[res.status] ?? 'server_error', res.statusText, res.status, [], retryAfterS);
  }
  if (data === null) throw new ApiError('bad_response', 'expected a JSON body', res.status);
  return data as T;
}

const enc = encodeURIComponent;

/** One function per route of docs/protocol.md. */
export const api = {
  register: (body: RegisterBody) => request<User>('POST', '/api/accounts', body),
  login: (body: LoginBody) => request<User>('POST', '/api/sessions', body),
  logout: () => request<void>('DELETE', '/api/sessions/current', {}),
  me: () => request<User>('GET', '/api/me'),

  createRoom: (body: CreateRoomBody) => request<Room>('POST', '/api/rooms', body),
  listRooms: () => request<{ rooms: Room[] }>('GET', '/api/rooms'),
  getRoom: (roomId: string, opts?: RequestOptions) => request<Room>('GET', `/api/rooms/${enc(roomId)}`, undefined, opts),
  patchRoom: (roomId: string, body: PatchRoomBody) => request<Room>('PATCH', `/api/rooms/${enc(roomId)}`, body),
  endRoom: (roomId: string) => request<Room>('POST', `/api/rooms/${enc(roomId)}/end`, {}),

  createCode: (roomId: string, body: CreateCodeBody) => request<ShareCode>('POST', `/api/rooms/${enc(roomId)}/codes`, body),
  listCodes: (roomId: string) => request<{ codes: ShareCode[] }>('GET', `/api/rooms/${enc(roomId)}/codes`),
  revokeCode: (roomId: string, codeId: string) =>
    request<void>('DELETE', `/api/rooms/${enc(roomId)}/codes/${enc(codeId)}`, {}),

  invite: (roomId: string, email: string) => request<Invite>('POST', `/api/rooms/${enc(roomId)}/invites`, { email }),
  redeem: (roomId: string, body: RedeemBody) => request<Admission>('POST', `/api/rooms/${enc(roomId)}/redeem`, body),
  join: (roomId: string) => request<Admission>('POST', `/api/rooms/${enc(roomId)}/join`, {}),
  audit: (roomId: string) => request<{ events: AuditEvent[] }>('GET', `/api/rooms/${enc(roomId)}/audit`),
};
