/**
 * Chat state without DOM or socket: messages keyed by their client id (so a retried or
 * echoed message is kept once), ordered by the server's seq, with this client's unacked
 * messages after them in the order they were written.
 */
import type { ChatMessage } from '../net/protocol';

export type EntryStatus = 'pending' | 'sent' | 'failed';

export interface ChatEntry {
  id: string;
  text: string;
  authorId: string;
  authorName: string;
  /** null until the server has stored it. */
  seq: number | null;
  ts: number;
  status: EntryStatus;
  /** Error code of the last failed attempt, for `failed` entries. */
  error: string | null;
  /** Local order of pending entries. */
  order: number;
}

export class ChatStore {
  private readonly entries = new Map<string, ChatEntry>();
  private counter = 0;
  private maxSeq = 0;
  private seenAny = false;

  /** Highest seq seen, or null before anything was seen (then `since` is left out). */
  get lastSeq(): number | null {
    return this.seenAny ? this.maxSeq : null;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Record that the server's chat log reaches `seq` (the `last_seq` of `joined`). */
  noteSeq(seq: number): void {
    this.seenAny = true;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  addPending(id: string, text: string, authorId: string, authorName: string, now = Date.now()): ChatEntry {
    const entry: ChatEntry = {
      id,
      text,
      authorId,
      authorName,
      seq: null,
      ts: now,
      status: 'pending',
      error: null,
      order: ++this.counter,
    };
    this.entries.set(id, entry);
    return entry;
  }

  /** A stored message (history, live `chat` event or ack): insert or replace by id. */
  put(msg: ChatMessage): ChatEntry {
    const prev = this.entries.get(msg.id);
    const entry: ChatEntry = {
      id: msg.id,
      text: msg.text,
      authorId: msg.author_id,
      authorName: msg.author_name,
      seq: msg.seq,
      ts: msg.ts,
      status: 'sent',
      error: null,
      order: prev?.order ?? ++this.counter,
    };
    this.entries.set(msg.id, entry);
    this.noteSeq(msg.seq);
    return entry;
  }

  putAll(messages: readonly ChatMessage[]): void {
    for (const m of messages) this.put(m);
  }

  markFailed(id: string, code: string): void {
    const e = this.entries.get(id);
    if (e && e.seq === null) {
      e.status = 'failed';
      e.error = code;
    }
  }

  markPending(id: string): ChatEntry | undefined {
    const e = this.entries.get(id);
    if (e && e.seq === null) {
      e.status = 'pending';
      e.error = null;
    }
    return e;
  }

  get(id: string): ChatEntry | undefined {
    return this.entries.get(id);
  }

  remove(id: string): void {
    const e = this.entries.get(id);
    if (e && e.seq === null) this.entries.delete(id);
  }

  /** Entries waiting for an ack, oldest first. */
  pending(): ChatEntry[] {
    return [...this.entries.values()].filter((e) => e.status === 'pending').sort((a, b) => a.order - b.order);
  }

  /** Stored messages by seq, then unacked ones in the order they were written. */
  ordered(): ChatEntry[] {
    return [...this.entries.values()].sort((a, b) => {
      if (a.seq !== null && b.seq !== null) return a.seq - b.seq;
      if (a.seq !== null) return -1;
      if (b.seq !== null) return 1;
      return a.order - b.order;
    });
  }
}

/** A client message id as the protocol wants it: 1..64 of [A-Za-z0-9_-]. */
export function newMessageId(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
