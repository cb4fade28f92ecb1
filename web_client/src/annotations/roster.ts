/**
 * Participant names by id, to name annotation authors and to put our own name on our
 * pointer. Kept from the room's `joined` (every reconnect) and `presence` events; the room
 * page builds this panel while it handles the first `joined`, and hands that payload over
 * through `AnnotationPanel.onJoined`.
 */
import { ServerEvent, type JoinedPayload, type Participant } from '../net/protocol';
import type { RoomSocket } from '../net/socket';

export class Roster {
  private readonly names = new Map<string, string>();
  private readonly listeners = new Set<() => void>();

  constructor(socket: RoomSocket) {
    socket.socket.on(ServerEvent.joined, (p) => this.setJoined(p));
    socket.socket.on(ServerEvent.presence, (p) => this.set([p]));
  }

  name(id: string): string | null {
    return this.names.get(id) ?? null;
  }

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  setJoined(p: Pick<JoinedPayload, 'self' | 'participants'>): void {
    this.set([p.self, ...p.participants]);
  }

  /** Names from the page's participant list (`data-testid="participant-<id>"` items). */
  private set(people: readonly Pick<Participant, 'id' | 'name'>[]): void {
    let changed = false;
    for (const p of people) {
      if (typeof p?.id !== 'string' || typeof p.name !== 'string' || this.names.get(p.id) === p.name) continue;
      this.names.set(p.id, p.name);
      changed = true;
    }
    if (changed) for (const cb of this.listeners) cb();
  }
}
