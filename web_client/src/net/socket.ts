/**
 * The one socket.io connection to a room (docs/protocol.md, "Socket.io").
 *
 * Reconnects by itself: socket.io's manager retries dropped transports, and this class
 * reconnects by hand where socket.io would stop (the server closed the socket without a
 * terminal event, a transient refusal such as `rate_limited`, `server_shutdown`).
 * The `auth` object is rebuilt on every attempt so that it carries the latest `since`.
 */
import { io, type Socket } from 'socket.io-client';
import * as msgpackParser from 'socket.io-msgpack-parser';
import {
  ServerEvent,
  type Ack,
  type ClientToServerEvents,
  type ErrorInfo,
  type ServerToClientEvents,
  type SocketAuth,
} from './protocol';

export type ConnectionStatus = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** A socket request that failed: an `{ok: false}` ack, a timeout or no connection. */
export class AckError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'AckError';
    this.code = code;
  }
}

/** Refusals after which retrying with the same credentials is pointless. */
const FATAL_CONNECT_CODES = new Set(['unauthorized', 'forbidden', 'not_found', 'gone', 'bad_request', 'validation_error']);
/** How long after `server_shutdown` connection refusals are not taken as final. */
const SHUTDOWN_WINDOW_MS = 60000;
/** Server events after which the server closes the socket for good. */
const TERMINAL_EVENTS = new Set<string>([ServerEvent.rejected, ServerEvent.removed, ServerEvent.ended]);

export interface RoomSocketOptions {
  roomId: string;
  /** Participant token; null lets the `consultd_p_<room>` cookie speak. */
  getToken: () => string | null;
  /** Last chat seq seen, or null before the first `joined`. */
  getSince: () => number | null;
  /** Called once when the server refuses the connection for good. */
  onFatal: (error: ErrorInfo) => void;
}

type AckPayload<E extends keyof ClientToServerEvents> =
  Parameters<Parameters<ClientToServerEvents[E]>[1]>[0] extends infer A ? Extract<A, { ok: true }> : never;

type EmitWithAck = (event: string, payload: unknown) => Promise<unknown>;

export class RoomSocket {
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  private statusValue: ConnectionStatus = 'connecting';
  private readonly statusListeners = new Set<(s: ConnectionStatus) => void>();
  private terminal = false;
  private closed = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private manualAttempts = 0;
  /** When the server last announced `server_shutdown` (ms), or 0. */
  private shutdownAt = 0;

  constructor(private readonly opts: RoomSocketOptions) {
    this.socket = io({
      path: '/socket.io/',
      transports: ['websocket', 'polling'],
      parser: msgpackParser,
      autoConnect: false,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      timeout: 10000,
      withCredentials: true,
      auth: (cb: (data: object) => void) => cb(this.buildAuth()),
    });

    this.socket.on('connect', () => {
      this.manualAttempts = 0;
      this.shutdownAt = 0;
      this.setStatus('connected');
    });
    this.socket.on('disconnect', (reason) => this.handleDisconnect(reason));
    this.socket.on('connect_error', (err) => this.handleConnectError(err));
    this.socket.io.on('reconnect_attempt', () => {
      if (!this.closed) this.setStatus('reconnecting');
    });
    this.socket.onAny((event: string) => {
      if (TERMINAL_EVENTS.has(event)) this.terminal = true;
    });
    this.socket.on(ServerEvent.server_shutdown, ({ reconnect_after_s }) => {
      // The server is stopping: leave now, come back when it says.
      this.shutdownAt = Date.now();
      this.socket.disconnect();
      const jitter = Math.random() * 1000;
      this.scheduleReconnect(Math.max(0, reconnect_after_s) * 1000 + jitter);
    });
  }

  get status(): ConnectionStatus {
    return this.statusValue;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  connect(): void {
    if (this.closed) return;
    this.socket.connect();
  }

  onStatus(cb: (s: ConnectionStatus) => void): () => void {
    this.statusListeners.add(cb);
    cb(this.statusValue);
    return () => this.statusListeners.delete(cb);
  }

  /**
   * Emit a client event without an ack: for messages that are superseded soon anyway
   * (pointers). The server then reports a failure as an `error` event naming the event;
   * an ack is one more frame per message for the server to write.
   */
  post<E extends keyof ClientToServerEvents>(event: E, payload: Parameters<ClientToServerEvents[E]>[0]): void {
    if (!this.socket.connected) return;
    (this.socket.emit as (ev: string, p: unknown) => void)(event, payload);
  }

  /** Emit a client event and wait for its ack; throws AckError unless `{ok: true}`. */
  async send<E extends keyof ClientToServerEvents>(
    event: E,
    payload: Parameters<ClientToServerEvents[E]>[0],
    timeoutMs = 10000,
  ): Promise<AckPayload<E>> {
    if (!this.socket.connected) throw new AckError('offline', 'not connected');
    const timed = this.socket.timeout(timeoutMs) as unknown as { emitWithAck: EmitWithAck };
    let res: unknown;
    try {
      res = await timed.emitWithAck(event, payload);
    } catch {
      throw new AckError('timeout', `no ack for ${event}`);
    }
    const ack = res as Ack;
    if (typeof ack !== 'object' || ack === null) throw new AckError('bad_response', `bad ack for ${event}`);
    if (!ack.ok) throw new AckError(ack.error?.code ?? 'unknown', ack.error?.message ?? '');
    return ack as AckPayload<E>;
  }

  /** Close for good (leaving the page, terminal events). */
  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket.disconnect();
    this.setStatus('closed');
  }

  private buildAuth(): SocketAuth {
    const auth: SocketAuth = { room: this.opts.roomId };
    const token = this.opts.getToken();
    if (token) auth.token = token;
    const since = this.opts.getSince();
    if (since !== null) auth.since = since;
    return auth;
  }

  private handleDisconnect(reason: Socket.DisconnectReason): void {
    if (this.closed) return;
    if (this.terminal) {
      this.close();
      return;
    }
    if (reason === 'io client disconnect') {
      // Ours: either close() (handled above) or server_shutdown, which scheduled the retry.
      this.setStatus('reconnecting');
      return;
    }
    this.setStatus('reconnecting');
    if (reason === 'io server disconnect') {
      // socket.io does not retry after a server-side disconnect; we do (e.g. a slow
      // client dropped by the server resyncs with `since`).
      this.scheduleReconnect(this.backoff());
    }
  }

  private handleConnectError(err: Error & { data?: unknown }): void {
    if (this.closed) return;
    if (this.socket.active) {
      // Transport-level failure: socket.io retries by itself.
      this.setStatus(this.statusValue === 'connecting' ? 'connecting' : 'reconnecting');
      return;
    }
    const data = err.data as Partial<ErrorInfo> | undefined;
    const info: ErrorInfo = { code: data?.code ?? 'unknown', message: data?.message ?? err.message };
    // Between `server_shutdown` and the next successful connect every refusal is taken as
    // transient (a stopping server, or its successor still starting).
    const restarting = Date.now() - this.shutdownAt < SHUTDOWN_WINDOW_MS;
    if (FATAL_CONNECT_CODES.has(info.code) && !restarting) {
      this.close();
      this.opts.onFatal(info);
      return;
    }
    this.setStatus('reconnecting');
    this.scheduleReconnect(this.backoff());
  }

  /** 0.5-1 s, doubling up to 5-10 s: a server that comes back is found within 10 s. */
  private backoff(): number {
    this.manualAttempts += 1;
    const base = Math.min(10000, 500 * 2 ** Math.min(this.manualAttempts, 5));
    return base / 2 + Math.random() * (base / 2);
  }

  private scheduleReconnect(delayMs: number): void {
    if (this.closed) return;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.setStatus('reconnecting');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  private setStatus(s: ConnectionStatus): void {
    if (s === this.statusValue) return;
    this.statusValue = s;
    for (const cb of this.statusListeners) cb(s);
  }
}
