"""The room's annotation documents over socket.io: y-protocols in, validated updates out.

One ``AnnotationDocument`` (``annotations/document.py``) per image of a room, held by the
room's ``RoomAnnotations`` component. A ``y`` event carries ``{doc, data}``: ``data`` is
one y-protocols message, unchanged (sync step 1 or 2, update, awareness). Updates are
validated (schema, authorship, role), appended to the update log in a group commit, and
only then sent to the rest of the room; the sender's own update is never echoed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from pycrdt import merge_updates
from sqlalchemy.ext.asyncio import AsyncConnection

from annotations.document import AnnotationDocument, AnnotationRejected
from annotations.sync import (
    MessageKind,
    SyncError,
    parse_message,
    sync_step1,
    sync_step2,
    update_message,
)
from consultd.errors import AnnotationRefused, Unavailable, ValidationFailed
from consultd.ids import now
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize
from consultd.rooms.room import Participant, Role, Room
from consultd.store.tables import annotation_updates
from consultd.store.unit import Store

COMPONENT = "annotations"
_INSERT = annotation_updates.insert()
_TRUNCATE = annotation_updates.delete().where(
    annotation_updates.c.room_id == sa.bindparam("room_id"),
    annotation_updates.c.doc_id == sa.bindparam("doc_id"),
    annotation_updates.c.seq <= sa.bindparam("upto"),
)
_DOC_IDS = (
    sa.select(annotation_updates.c.doc_id)
    .where(annotation_updates.c.room_id == sa.bindparam("room_id"))
    .distinct()
    .order_by(annotation_updates.c.doc_id)
)
_LOG = (
    sa.select(annotation_updates.c.seq, annotation_updates.c.data)
    .where(
        annotation_updates.c.room_id == sa.bindparam("room_id"),
        annotation_updates.c.doc_id == sa.bindparam("doc_id"),
    )
    .order_by(annotation_updates.c.seq)
)


#: A y-protocols state vector of a peer that has nothing (lib0 var-uint 0).
EMPTY_STATE_VECTOR = b"\x00"


class _Entry:
    __slots__ = ("compacted_upto", "doc", "full_state_message", "next_seq")

    def __init__(self, doc: AnnotationDocument, next_seq: int) -> None:
        self.doc = doc
        self.next_seq = next_seq
        self.compacted_upto = next_seq - 1
        #: sync step 2 for a peer with nothing, kept until the next change: a late joiner
        #: costs one send, not an encode of the whole document.
        self.full_state_message: bytes | None = None


class RoomAnnotations:
    """A room's annotation documents (a ``RoomComponent``)."""

    def __init__(self) -> None:
        self.docs: dict[str, _Entry] = {}
        self.loading: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        docs, self.docs = self.docs, {}
        for entry in docs.values():
            entry.doc.close()


class AnnotationService:
    def __init__(self, store: Store, notifier: Notifier, *, compact_every: int = 500) -> None:
        self.store = store
        self.notifier = notifier
        #: Updates appended to a document's log before it is compacted into one row.
        self.compact_every = compact_every

    async def message(self, p: Participant, room: Room, doc_id: str, data: bytes) -> None:
        try:
            msg = parse_message(data)
        except SyncError as exc:
            raise ValidationFailed("not a y-protocols message: " + str(exc)) from None
        if msg.kind is MessageKind.AWARENESS:
            authorize(p, room, Action.VIEW)
            self.notifier.broadcast(room.id, "y", {"doc": doc_id, "data": data}, exclude=p.id)
            return
        if msg.kind is MessageKind.SYNC_STEP1:
            authorize(p, room, Action.VIEW)
            entry = await self._entry(room, doc_id)
            if msg.payload == EMPTY_STATE_VECTOR:
                if entry.full_state_message is None:
                    entry.full_state_message = sync_step2(entry.doc.snapshot())
                step2 = entry.full_state_message
            else:
                try:
                    step2 = sync_step2(entry.doc.diff(msg.payload))
                except AnnotationRejected as exc:
                    raise ValidationFailed("bad state vector: " + str(exc)) from None
            # Answer with what the client lacks, then ask for what the server lacks.
            self.notifier.send(room.id, p.id, "y", {"doc": doc_id, "data": step2})
            self.notifier.send(
                room.id, p.id, "y", {"doc": doc_id, "data": sync_step1(entry.doc.state_vector())}
            )
            return
        # SyncStep2 and Update both carry a Yjs update.
        authorize(p, room, Action.DRAW)
        entry = await self._entry(room, doc_id)
        try:
            applied = entry.doc.apply(msg.payload, author=p.id, is_host=p.role is Role.HOST)
        except AnnotationRejected as exc:
            raise AnnotationRefused(str(exc)) from None
        if not applied.changed:
            return  # a duplicate: nothing to store or relay
        entry.full_state_message = None
        seq = entry.next_seq
        entry.next_seq += 1
        try:
            await self.store.later(self._append_job(room, doc_id, seq, p, msg.payload, applied))
        except Exception:
            # The document holds an update the log does not: reload it from the log.
            self._forget(room, doc_id)
            raise Unavailable("the annotation could not be stored; sync again") from None
        if seq - entry.compacted_upto >= self.compact_every:
            # Row ``seq`` is on disk now; the snapshot may hold later updates too, which
            # their own rows repeat (applying a Yjs update twice changes nothing).
            entry.compacted_upto = seq
            self.store.later(self._compact_job(room, doc_id, seq, entry.doc.snapshot()))
        # Relay as an update message, whatever step the sender used.
        self.notifier.broadcast(
            room.id, "y", {"doc": doc_id, "data": update_message(msg.payload)}, exclude=p.id
        )

    def _append_job(
        self, room: Room, doc_id: str, seq: int, p: Participant, update: bytes, applied: Any
    ) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def job(conn: AsyncConnection) -> None:
            await conn.execute(
                _INSERT,
                {
                    "room_id": room.id,
                    "doc_id": doc_id,
                    "seq": seq,
                    "author_id": p.id,
                    "data": update,
                    "at": now(),
                },
            )
            # Which annotations changed, by whom: ids only, never their content.
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=p.id,
                action="annotations.changed",
                target=doc_id,
                room_id=room.id,
                detail={
                    "added": list(applied.added),
                    "updated": list(applied.updated),
                    "deleted": list(applied.deleted),
                },
            )

        return job

    def _compact_job(
        self, room: Room, doc_id: str, upto: int, snapshot: bytes
    ) -> Callable[[AsyncConnection], Awaitable[None]]:
        """Replace log rows 1..upto by one row holding the document's state at ``upto``."""

        async def job(conn: AsyncConnection) -> None:
            await conn.execute(_TRUNCATE, {"room_id": room.id, "doc_id": doc_id, "upto": upto})
            await conn.execute(
                _INSERT,
                {
                    "room_id": room.id,
                    "doc_id": doc_id,
                    "seq": upto,
                    "author_id": "compaction",
                    "data": snapshot,
                    "at": now(),
                },
            )

        return job

    async def export(self, room: Room) -> dict[str, dict[str, dict[str, Any]]]:
        """Every annotation document of the room as plain JSON (O(room): export only)."""
        async with self.store.db.read() as conn:
            doc_ids = (await conn.execute(_DOC_IDS, {"room_id": room.id})).scalars().all()
        return {doc_id: (await self._entry(room, doc_id)).doc.annotations() for doc_id in doc_ids}

    def _component(self, room: Room) -> RoomAnnotations:
        comp = room.components.get(COMPONENT)
        if comp is None:
            comp = room.components[COMPONENT] = RoomAnnotations()
        assert isinstance(comp, RoomAnnotations)
        return comp

    def _forget(self, room: Room, doc_id: str) -> None:
        entry = self._component(room).docs.pop(doc_id, None)
        if entry is not None:
            entry.doc.close()

    async def _entry(self, room: Room, doc_id: str) -> _Entry:
        comp = self._component(room)
        entry = comp.docs.get(doc_id)
        if entry is not None:
            return entry
        lock = comp.loading.setdefault(doc_id, asyncio.Lock())
        async with lock:
            entry = comp.docs.get(doc_id)
            if entry is None:
                entry = comp.docs[doc_id] = await self._load(room, doc_id)
        comp.loading.pop(doc_id, None)
        return entry

    async def _load(self, room: Room, doc_id: str) -> _Entry:
        async with self.store.db.read() as conn:
            rows = (await conn.execute(_LOG, {"room_id": room.id, "doc_id": doc_id})).all()
        if not rows:
            return _Entry(AnnotationDocument(), 1)
        merged = (
            merge_updates(*[bytes(r.data) for r in rows]) if len(rows) > 1 else bytes(rows[0].data)
        )
        return _Entry(AnnotationDocument.load(merged), rows[-1].seq + 1)
