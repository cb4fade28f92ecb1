/**
 * The shared map as the UI changes it: whole-value puts and deletes with the right
 * transaction origin, who may change what, and the annotations in drawing order.
 *
 * Rights (the server enforces them too): participants and the host draw; each changes or
 * deletes only their own annotations, the host anyone's. Our own changes are made with
 * origin LOCAL, which the undo manager tracks. The host's changes to another author's
 * annotation use HOST_EDIT, which it does not: undoing such a delete would re-create the
 * annotation in the other author's name, which the server refuses.
 */
import { HOST_EDIT, LOCAL, type AnnotationDoc } from './doc';
import { isAnnotation, type Annotation } from './tools';

export interface Rights {
  self: string | null;
  isHost: boolean;
  canDraw: boolean;
}

export class Editor {
  private sorted: Annotation[] | null = null;

  constructor(
    private readonly doc: AnnotationDoc,
    private readonly rights: () => Rights,
    /** Ends the current undo step (Y.UndoManager.stopCapturing). */
    readonly boundary: () => void,
  ) {}

  /** Call on every change of the map (or a new map). */
  invalidate(): void {
    this.sorted = null;
  }

  /** Every annotation, oldest first (later ones are drawn on top). */
  items(): readonly Annotation[] {
    if (!this.sorted) {
      const out: Annotation[] = [];
      this.doc.map.forEach((v) => {
        if (isAnnotation(v)) out.push(v);
      });
      out.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.sorted = out;
    }
    return this.sorted;
  }

  get(id: string | null): Annotation | null {
    if (id === null) return null;
    const v = this.doc.map.get(id);
    return isAnnotation(v) ? v : null;
  }

  canEdit(a: Pick<Annotation, 'author'>): boolean {
    const r = this.rights();
    return r.canDraw && r.self !== null && (a.author === r.self || r.isHost);
  }

  /** Add or replace an annotation (the whole value). */
  put(a: Annotation): void {
    const { doc } = this;
    doc.doc.transact(() => doc.map.set(a.id, a), this.originFor(a));
  }

  /** Delete an annotation we may delete; false otherwise. */
  remove(id: string): boolean {
    const a = this.get(id);
    if (!a || !this.canEdit(a)) return false;
    const { doc } = this;
    doc.doc.transact(() => doc.map.delete(id), this.originFor(a));
    return true;
  }

  private originFor(a: Pick<Annotation, 'author'>): symbol {
    return a.author === this.rights().self ? LOCAL : HOST_EDIT;
  }
}
