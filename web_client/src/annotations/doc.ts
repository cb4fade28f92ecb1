/**
 * One shared annotation document per image key (docs/protocol.md, `y` event; the
 * annotation JSON is annotations/SCHEMA.md): a Y.Doc whose Y.Map `annotations` maps an
 * annotation id to its whole JSON value, synced with y-protocols over the room socket.
 *
 * Sync: on `joined` (first join and every reconnect) send sync step 1; apply the server's
 * step 2 and updates; answer the server's step 1 with our step 2. Local changes (any origin
 * but the server's) go out as update messages. When the server refuses an update
 * (`annotation_rejected`), the local document holds something the server never will: drop
 * it, start a fresh document and sync again from step 1.
 *
 * Awareness messages (live pointers, presence.ts) share the event: they are handed to the
 * `onAwareness` listener and sent with `sendAwareness`, whatever the sync state.
 */
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { ClientEvent, ServerEvent, type YPayloadIn } from '../net/protocol';
import { AckError, type RoomSocket } from '../net/socket';
import type { Annotation } from './tools';

const MESSAGE_SYNC = 0; // y-protocols message types
const MESSAGE_AWARENESS = 1;
const SWITCH_SETTLE_MS = 60;

/** Transaction origin of what the server sent. */
export const REMOTE = Symbol('remote');
/** Transaction origin of what this user draws (the only origin the undo manager tracks). */
export const LOCAL = Symbol('local');
/** Transaction origin of the host's changes to another author's annotations: not undoable
 * (an undo that re-creates an annotation in another author's name would be refused). */
export const HOST_EDIT = Symbol('host-edit');

/** An exact-size Uint8Array: notepack sends a view's whole backing buffer. */
function exact(u8: Uint8Array): Uint8Array {
  return u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8 : u8.slice();
}

/** The bytes as they must go on the wire (see `YPayload`): the exact-size ArrayBuffer. */
function wire(u8: Uint8Array): ArrayBuffer {
  return exact(u8).buffer as ArrayBuffer;
}

function bytesOf(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

export class AnnotationDoc {
  doc: Y.Doc;
  map: Y.Map<Annotation>;
  private synced = false;
  private canWrite = false;
  private readonly resetListeners = new Set<() => void>();
  private readonly syncListeners = new Set<(synced: boolean) => void>();
  private awarenessListener: ((update: Uint8Array) => void) | null = null;
  private readonly onUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === REMOTE) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, MESSAGE_SYNC);
    syncProtocol.writeUpdate(enc, update);
    // Not connected: the next step 1 exchange carries it.
    if (this.synced) this.send(enc);
  };

  private step1Timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly socket: RoomSocket,
    /** The image key (`demo:1`, or `<sop uid>:<frame>`): which document this is. */
    public key: string,
  ) {
    this.doc = this.newDoc();
    this.map = this.doc.getMap<Annotation>('annotations');
    const io = socket.socket;
    io.on(ServerEvent.y, (p) => this.onMessage(p));
    io.on(ServerEvent.error, (e) => {
      if (e.code === 'annotation_rejected' && e.event === ClientEvent.y) this.reset();
    });
    io.on('disconnect', () => this.setSynced(false));
  }

  get isSynced(): boolean {
    return this.synced;
  }

  /** Whether this participant may send step 2 and updates (host, participant). */
  setCanWrite(on: boolean): void {
    this.canWrite = on;
  }

  /** Called on every `joined`: a (re)connect, so sync from step 1. */
  onJoined(): void {
    this.setSynced(false);
    this.sendStep1();
  }

  /** A fresh document replaced the old one (after a refused update). */
  onReset(cb: () => void): () => void {
    this.resetListeners.add(cb);
    return () => this.resetListeners.delete(cb);
  }

  onSync(cb: (synced: boolean) => void): () => void {
    this.syncListeners.add(cb);
    return () => this.syncListeners.delete(cb);
  }

  /** Where awareness updates from the others go (one listener). */
  onAwareness(cb: (update: Uint8Array) => void): void {
    this.awarenessListener = cb;
  }

  /** Send one awareness update, without an ack (best effort: a lost one is renewed or
   * superseded, and a pointer moving at 20 Hz would cost the server an ack frame each). */
  sendAwareness(update: Uint8Array): void {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, MESSAGE_AWARENESS);
    encoding.writeVarUint8Array(enc, update);
    this.socket.post(ClientEvent.y, { doc: this.key, data: wire(encoding.toUint8Array(enc)) });
  }

  /**
   * Show another image's document: a fresh local document, synced from step 1 once the
   * choice has settled for SWITCH_SETTLE_MS (scrolling through a stack asks for the
   * document of the image it stops on, not of every image it passes).
   */
  switchTo(key: string): void {
    if (key === this.key) return;
    this.key = key;
    this.replaceDoc();
    if (this.step1Timer !== null) clearTimeout(this.step1Timer);
    this.step1Timer = setTimeout(() => {
      this.step1Timer = null;
      if (this.socket.connected && this.key === key) this.sendStep1();
    }, SWITCH_SETTLE_MS);
  }

  /** Drop the local state and sync again from the server. */
  reset(): void {
    this.replaceDoc();
    if (this.socket.connected) this.sendStep1();
  }

  private replaceDoc(): void {
    this.doc.off('update', this.onUpdate);
    this.doc.destroy();
    this.doc = this.newDoc();
    this.map = this.doc.getMap<Annotation>('annotations');
    this.setSynced(false);
    for (const cb of this.resetListeners) cb();
  }

  private newDoc(): Y.Doc {
    const doc = new Y.Doc();
    doc.on('update', this.onUpdate);
    return doc;
  }

  private setSynced(on: boolean): void {
    if (this.synced === on) return;
    this.synced = on;
    for (const cb of this.syncListeners) cb(on);
  }

  private sendStep1(): void {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, MESSAGE_SYNC);
    syncProtocol.writeSyncStep1(enc, this.doc);
    this.send(enc);
  }

  private send(enc: encoding.Encoder): void {
    const data = wire(encoding.toUint8Array(enc));
    this.socket.send(ClientEvent.y, { doc: this.key, data }).catch((err: unknown) => {
      if (err instanceof AckError && err.code === 'annotation_rejected') this.reset();
      // offline / timeout: the step 1 exchange after the reconnect catches up
    });
  }

  private onMessage(p: YPayloadIn): void {
    if (p?.doc !== this.key) return;
    const bytes = bytesOf(p.data);
    if (!bytes) return;
    const decoder = decoding.createDecoder(bytes);
    let type: number;
    let awareness: Uint8Array | null = null;
    try {
      type = decoding.readVarUint(decoder);
      if (type === MESSAGE_AWARENESS) awareness = decoding.readVarUint8Array(decoder);
    } catch {
      return; // truncated: not a message we can read
    }
    if (awareness) {
      this.awarenessListener?.(awareness);
      return;
    }
    if (type !== MESSAGE_SYNC) return;
    const reply = encoding.createEncoder();
    encoding.writeVarUint(reply, MESSAGE_SYNC);
    const syncType = syncProtocol.readSyncMessage(decoder, reply, this.doc, REMOTE);
    if (syncType === syncProtocol.messageYjsSyncStep2) this.setSynced(true);
    if (syncType === syncProtocol.messageYjsSyncStep1 && this.canWrite) {
      // Our step 2: what the server lacks (drawn while offline).
      this.send(reply);
    }
  }
}
