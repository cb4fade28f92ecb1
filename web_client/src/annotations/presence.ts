/**
 * Live pointers over the image, with y-protocols awareness on the document's `y` event.
 *
 * Local state: `{user: {name, color}, pointer: {x, y} | null, image}`, pointer in image
 * pixel coordinates, null off the image. Pointer changes go out at most every
 * POINTER_INTERVAL_MS (the latest position wins). Remote states expire as y-protocols does
 * (no renewal within 30 s), go at once when our socket drops (they are stale), and are
 * re-learnt on reconnect: we announce our state on every join (`rejoin`) and answer a
 * newcomer's first state with ours. A relayed awareness message may carry several clients'
 * states, including an old copy of ours: `applyAwarenessUpdate` keeps the newest clock per
 * client.
 *
 * While our socket was down, the others may have been told that we left: a `null` state at
 * our clock + 1. So `rejoin` moves our clock on by two before it announces, and whenever an
 * update touches our own entry (y-protocols bumps our clock when someone removes us) we send
 * it, as y-protocols' providers do.
 */
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { Throttle } from './throttle';
import type { Point } from './tools';

export const POINTER_INTERVAL_MS = 50;
/** Transaction origin of what the others sent. */
const REMOTE = 'remote';

export interface RemotePointer {
  clientId: number;
  name: string;
  color: string;
  x: number;
  y: number;
}

interface LocalState {
  user: { name: string; color: string };
  pointer: { x: number; y: number } | null;
  image: string;
}

const COLOR = /^#[0-9a-fA-F]{6}$/;

function pointerOf(clientId: number, state: unknown, image: string): RemotePointer | null {
  if (typeof state !== 'object' || state === null) return null;
  const s = state as Partial<{ user: unknown; pointer: unknown; image: unknown }>;
  if (s.image !== image || typeof s.pointer !== 'object' || s.pointer === null) return null;
  const { x, y } = s.pointer as { x?: unknown; y?: unknown };
  if (typeof x !== 'number' || typeof y !== 'number' || !Number.isFinite(x) || !Number.isFinite(y)) return null;
  const user = (typeof s.user === 'object' && s.user !== null ? s.user : {}) as { name?: unknown; color?: unknown };
  const name = typeof user.name === 'string' ? user.name.slice(0, 80) : '';
  const color = typeof user.color === 'string' && COLOR.test(user.color) ? user.color : '#888888';
  return { clientId, name, color, x, y };
}

export interface PresenceTransport {
  /** Send one awareness update (the caller frames it). */
  send(update: Uint8Array): void;
  /** Whether we are in the room and the socket is up. */
  live(): boolean;
}

export class Presence {
  readonly awareness: awarenessProtocol.Awareness;
  /** Awareness needs a client id; a document of its own keeps it across document resets. */
  private readonly idDoc = new Y.Doc();
  private pending: { x: number; y: number } | null | undefined = undefined;
  private readonly throttle = new Throttle(POINTER_INTERVAL_MS, () => this.flushPointer());
  private pointersCache: RemotePointer[] | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly onPageHide = (): void => this.leave();

  constructor(
    private readonly transport: PresenceTransport,
    private image: string,
  ) {
    this.awareness = new awarenessProtocol.Awareness(this.idDoc);
    this.awareness.setLocalState({ user: { name: '', color: '#888888' }, pointer: null, image } satisfies LocalState);
    this.awareness.on('update', ({ added, updated, removed }: AwarenessChange) => {
      const own = this.awareness.clientID;
      if (added.includes(own) || updated.includes(own) || removed.includes(own)) this.sendStates([own]);
    });
    this.awareness.on('change', ({ added }: AwarenessChange, origin: unknown) => {
      this.pointersCache = null;
      for (const cb of this.listeners) cb();
      // A newcomer does not know us yet: answer its first state with ours.
      if (origin === REMOTE && added.some((id) => id !== this.awareness.clientID)) this.announce();
    });
    window.addEventListener('pagehide', this.onPageHide);
  }

  get clientId(): number {
    return this.awareness.clientID;
  }

  /** Who we are (on every join: the name may have changed). */
  setUser(name: string, color: string): void {
    const cur = this.awareness.getLocalState() as LocalState | null;
    if (cur && cur.user.name === name && cur.user.color === color) return;
    this.awareness.setLocalState({ ...(cur ?? { pointer: null, image: this.image }), user: { name, color } });
  }

  /**
   * We look at another image: our pointer leaves the old one (the others there see it go),
   * then the caller switches the document and we announce ourselves on the new one.
   */
  leaveImage(): void {
    this.throttle.cancel();
    this.pending = undefined;
    const cur = this.awareness.getLocalState() as LocalState | null;
    if (cur?.pointer) this.awareness.setLocalStateField('pointer', null);
  }

  setImage(image: string): void {
    if (image === this.image) return;
    this.image = image;
    this.pointersCache = null;
    const cur = this.awareness.getLocalState() as LocalState | null;
    if (cur) this.awareness.setLocalState({ ...cur, pointer: null, image });
    for (const cb of this.listeners) cb();
  }

  /** Our pointer moved (image pixels), or left the image (null). Throttled. */
  setPointer(p: Point | null): void {
    this.pending = p ? { x: Math.round(p[0] * 10) / 10, y: Math.round(p[1] * 10) / 10 } : null;
    this.throttle.request();
  }

  private flushPointer(): void {
    if (this.pending === undefined) return;
    const cur = this.awareness.getLocalState() as LocalState | null;
    const next = this.pending;
    this.pending = undefined;
    if (!cur) return;
    const prev = cur.pointer;
    if (prev === next || (prev && next && prev.x === next.x && prev.y === next.y)) return;
    this.awareness.setLocalStateField('pointer', next);
  }

  /** An awareness update from the others (possibly several clients' states). */
  apply(update: Uint8Array): void {
    try {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, update, REMOTE);
    } catch {
      // a malformed message: ignore it
    }
  }

  /**
   * After every join: our state, two clock steps on (a removal the others may have been
   * sent while we were away is at our clock + 1).
   */
  rejoin(): void {
    const state = this.awareness.getLocalState();
    const meta = this.awareness.meta.get(this.awareness.clientID);
    if (state === null || !meta) return;
    meta.clock += 1;
    this.awareness.setLocalState({ ...state }); // the second step, sent by the update handler
  }

  /** Send our whole state (someone new should learn about us). */
  announce(): void {
    if (this.awareness.getLocalState() !== null) this.sendStates([this.awareness.clientID]);
  }

  /** The socket dropped: whatever we know of the others is stale. */
  dropRemote(): void {
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.awareness.clientID);
    if (others.length) awarenessProtocol.removeAwarenessStates(this.awareness, others, 'disconnect');
  }

  /** The others' pointers on this image (cached until the next change). */
  pointers(): readonly RemotePointer[] {
    if (this.pointersCache) return this.pointersCache;
    const out: RemotePointer[] = [];
    this.awareness.getStates().forEach((state, id) => {
      if (id === this.awareness.clientID) return;
      const p = pointerOf(id, state, this.image);
      if (p) out.push(p);
    });
    this.pointersCache = out;
    return out;
  }

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Tell the others we are gone (null state), e.g. when the page is hidden for good. */
  leave(): void {
    if (this.awareness.getLocalState() !== null) awarenessProtocol.removeAwarenessStates(this.awareness, [this.awareness.clientID], 'local');
  }

  destroy(): void {
    this.throttle.cancel();
    window.removeEventListener('pagehide', this.onPageHide);
    this.leave();
    this.idDoc.destroy(); // destroys the awareness too
    this.listeners.clear();
  }

  private sendStates(clients: number[]): void {
    if (!this.transport.live()) return;
    this.transport.send(awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
  }
}

interface AwarenessChange {
  added: number[];
  updated: number[];
  removed: number[];
}
