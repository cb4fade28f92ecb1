"""The room's annotation documents over socket.io: y-protocols in, validated updates out.

One ``AnnotationDocument`` (``annotations/document.py``) per image of a room, held by the
room's ``RoomAnnotations`` component. A ``y`` event carries ``{doc, data}``: ``data`` is
one y-protocols message (sync step 1 or 2, update, awareness). Updates are validated
(schema, authorship, role), appended to the update log in a group commit, and only then
sent to the rest of the room.

Fan-out (``_Outbox``, one per room): a message goes out at once while the room is quiet;
past ``IMMEDIATE_PER_TICK`` updates within one ``TICK_S`` (or one pointer message within
``POINTER_TICK_S``) the rest wait for the end of the tick and go out together: each
sender's updates to one image merged into one update (``merge_updates``), sent to everyone
but that sender; the pointers on one image as one awareness update holding each client's
newest state, sent to everyone (a client ignores its own state). Every member then gets a
frame per image and sender per tick, not one per message.

Audit: an update that only goes on with its author's edit of the same annotations (the
next points of a stroke, a handle being dragged) within ``AUDIT_BURST_S`` of the last is
part of the change already audited, not a new one; a burst is audited again after
``AUDIT_BURST_MAX_S``. Adds and deletes are always audited. (The update log keeps every
update with its author until compaction.)

Awareness (pointers, the image being looked at): the server keeps each client's newest
state per image while its participant is connected, sends them to a peer that syncs, and
tells the room the client is gone when its participant disconnects. A client id belongs to
the participant that first used it in the room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from pycrdt import merge_updates
from sqlalchemy.ext.asyncio import AsyncConnection

from annotations.document import AnnotationDocument, AnnotationRejected, Applied
from annotations.sync import (
    AwarenessEntry,
    MessageKind,
    SyncError,
    awareness_message,
    awareness_update,
    parse_awareness,
    parse_message,
    sync_step1,
    sync_step2,
    update_message,
)
from consultd.audit.log import AuditEvent
from consultd.errors import AnnotationRefused, Forbidden, Unavailable, ValidationFailed
from consultd.ids import now
from consultd.loopload import LoopLoad
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize
from consultd.rooms.room import Participant, Role, Room
from consultd.store.tables import annotation_updates
from consultd.store.unit import Insert, Store

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
_HAS_LOG = (
    sa.select(annotation_updates.c.seq)
    .where(
        annotation_updates.c.room_id == sa.bindparam("room_id"),
        annotation_updates.c.doc_id == sa.bindparam("doc_id"),
    )
    .limit(1)
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


#: Length of a fan-out tick for updates (module docstring).
TICK_S = 0.016
#: Updates a room sends at once within one tick before it starts to coalesce.
IMMEDIATE_PER_TICK = 2
#: Pointers: after one sent at once, the rest of the tick's wait, newest per client. A
#: write to a socket costs more than anything else per delivery (loopback: 20-30 us),
#: and a browser sends its own pointer at most every 50 ms (``POINTER_INTERVAL_MS`` in
#: web_client/src/annotations/presence.ts): a room of 50 moving pointers at 10 Hz then
#: costs 20 x 50 writes a second, not 500 x 49. (A 33 ms tick sent a third more pointer
#: frames for no newer state, which under load is what tips the loop over.) Times
#: ``LoopLoad.stretch``: up to three times longer while the event loop is near a full core.
POINTER_TICK_S = 0.05
#: Awareness client ids one participant may use in a room (tabs, images).
MAX_CLIENTS_PER_PARTICIPANT = 16
#: Quiet time after which an image's full state is encoded ahead of the next late joiner.
PREPARE_AFTER_S = 1.0
#: An image nobody has sent anything about for this long, with no pointer on it and no
#: write in flight, is unloaded (its log has it all); checked every ``SWEEP_EVERY_S``.
DOC_IDLE_S = 300.0
SWEEP_EVERY_S = 60.0
#: Audit bursts (module docstring): the longest pause within one change, and its longest
#: duration before it is audited again.
AUDIT_BURST_S = 2.0
AUDIT_BURST_MAX_S = 60.0


class _Entry:
    __slots__ = (
        "awareness",
        "changed_at",
        "compacted_upto",
        "doc",
        "full_state_message",
        "next_seq",
        "pending",
        "prepare",
        "used_at",
    )

    def __init__(self, doc: AnnotationDocument, next_seq: int) -> None:
        self.doc = doc
        self.next_seq = next_seq
        self.compacted_upto = next_seq - 1
        #: sync step 2 for a peer with nothing, kept until the next change: a late joiner
        #: costs one send, not an encode of the whole document.
        self.full_state_message: bytes | None = None
        #: Each connected client's newest awareness state for this image.
        self.awareness: dict[int, AwarenessEntry] = {}
        self.changed_at = 0.0
        self.prepare: asyncio.TimerHandle | None = None
        self.used_at = 0.0
        #: Updates applied whose log rows are not committed yet (never unloaded then).
        self.pending = 0

    def changed(self) -> None:
        """The document changed: drop the full state, and encode it again once the image
        has been quiet for ``PREPARE_AFTER_S``, so that a late joiner waits for one send,
        not for an encode of the whole document (60 ms at 10,000 annotations)."""
        self.full_state_message = None
        loop = asyncio.get_running_loop()
        self.changed_at = loop.time()
        if self.prepare is None:
            self.prepare = loop.call_at(self.changed_at + PREPARE_AFTER_S, self._prepare)

    def _prepare(self) -> None:
        self.prepare = None
        if self.doc.closed or self.full_state_message is not None:
            return
        loop = asyncio.get_running_loop()
        quiet_at = self.changed_at + PREPARE_AFTER_S
        if loop.time() < quiet_at:
            self.prepare = loop.call_at(quiet_at, self._prepare)
            return
        self.full_state_message = sync_step2(self.doc.snapshot())

    def close(self) -> None:
        if self.prepare is not None:
            self.prepare.cancel()
            self.prepare = None
        self.doc.close()


class _Pacer:
    """When a room's messages of one kind go out: at once while quiet, else at the end of
    the tick (module docstring)."""

    __slots__ = ("burst", "flush", "queued", "sent", "tick_s", "timer", "window")

    def __init__(self, tick_s: float, burst: int, flush: Callable[[], None]) -> None:
        self.tick_s = tick_s
        self.burst = burst
        self.flush = flush
        self.window = -tick_s
        self.sent = 0
        self.queued = 0  # messages that waited for the tick now pending
        self.timer: asyncio.TimerHandle | None = None

    def now(self) -> bool:
        """Whether a message may go out at once; else the caller queues it."""
        if self.timer is not None:
            self.queued += 1
            return False
        loop = asyncio.get_running_loop()
        t = loop.time()
        if t - self.window >= self.tick_s:
            self.window, self.sent = t, 0
        if self.sent < self.burst:
            self.sent += 1
            return True
        self.queued = 1
        self.timer = loop.call_at(self.window + self.tick_s, self._fire)
        return False

    def _fire(self) -> None:
        self.timer = None
        self.flush()
        # A tick that held more than a burst means the room is busy: what arrives in the
        # next tick coalesces too. One that held less (a chance burst in a room at about
        # one message per tick) reopens immediate sends: else such a room would never
        # leave coalescing and every message would wait for a tick's end.
        self.window = asyncio.get_running_loop().time()
        self.sent = self.burst if self.queued > self.burst else 0
        self.queued = 0

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Outbox:
    """A room's pending fan-out (module docstring)."""

    __slots__ = ("awareness", "load", "notifier", "pointers", "room_id", "updates", "writes")

    def __init__(self, notifier: Notifier, room_id: str, load: LoopLoad | None = None) -> None:
        self.notifier = notifier
        self.room_id = room_id
        self.load = load or LoopLoad()
        self.updates: dict[tuple[str, str], list[bytes]] = {}  # (image, sender) -> updates
        self.awareness: dict[str, dict[int, AwarenessEntry]] = {}
        self.writes = _Pacer(TICK_S, IMMEDIATE_PER_TICK, self._flush_updates)
        self.pointers = _Pacer(POINTER_TICK_S, 1, self._flush_pointers)

    def update(self, doc_id: str, update: bytes, sender: str) -> None:
        if self.writes.now():
            data = update_message(update)
            self.notifier.broadcast(
                self.room_id, "y", {"doc": doc_id, "data": data}, exclude=sender
            )
        else:
            self.updates.setdefault((doc_id, sender), []).append(update)

    def awareness_entries(self, doc_id: str, entries: list[AwarenessEntry], sender: str) -> None:
        self.pointers.tick_s = POINTER_TICK_S * self.load.stretch
        if self.pointers.now():
            data = awareness_message(awareness_update(entries))
            self.notifier.broadcast(
                self.room_id, "y", {"doc": doc_id, "data": data}, exclude=sender
            )
        else:
            pending = self.awareness.setdefault(doc_id, {})
            for e in entries:
                pending[e.client] = e

    def _flush_updates(self) -> None:
        updates, self.updates = self.updates, {}
        for (doc_id, sender), pending in updates.items():
            merged = merge_updates(*pending) if len(pending) > 1 else pending[0]
            data = update_message(merged)
            self.notifier.broadcast(
                self.room_id, "y", {"doc": doc_id, "data": data}, exclude=sender
            )

    def _flush_pointers(self) -> None:
        awareness, self.awareness = self.awareness, {}
        for doc_id, states in awareness.items():
            data = awareness_message(awareness_update(states.values()))
            self.notifier.broadcast(self.room_id, "y", {"doc": doc_id, "data": data})

    def close(self) -> None:
        self.writes.close()
        self.pointers.close()


class _Burst:
    """One participant's audited change of some annotations on one image, going on."""

    __slots__ = ("ids", "last", "started")

    def __init__(self, ids: frozenset[str], at: float) -> None:
        self.ids = ids
        self.started = self.last = at


class RoomAnnotations:
    """A room's annotation documents (a ``RoomComponent``)."""

    def __init__(self, notifier: Notifier, room_id: str, load: LoopLoad | None = None) -> None:
        self.room_id = room_id
        self.docs: dict[str, _Entry] = {}
        self.loading: dict[str, asyncio.Lock] = {}
        self.outbox = _Outbox(notifier, room_id, load)
        #: Awareness client id -> the participant using it; and the reverse.
        self.client_owner: dict[int, str] = {}
        self.clients_of: dict[str, set[int]] = {}
        self.sweep: asyncio.TimerHandle | None = None
        #: (participant, image) -> the change last audited (module docstring).
        self.bursts: dict[tuple[str, str], _Burst] = {}

    def audit(self, doc_id: str, p: Participant, applied: Applied) -> tuple[AuditEvent, ...]:
        """The audit event for an applied update, unless it goes on with the change its
        author made last (module docstring): ids only, never content."""
        if not applied:
            return ()
        at = asyncio.get_running_loop().time()
        key = (p.id, doc_id)
        burst = self.bursts.get(key)
        if (
            burst is not None
            and not applied.added
            and not applied.deleted
            and at - burst.last < AUDIT_BURST_S
            and at - burst.started < AUDIT_BURST_MAX_S
            and burst.ids.issuperset(applied.updated)
        ):
            burst.last = at
            return ()
        if applied.deleted:
            self.bursts.pop(key, None)
        else:
            self.bursts[key] = _Burst(frozenset(applied.added + applied.updated), at)
        detail = {
            "added": list(applied.added),
            "updated": list(applied.updated),
            "deleted": list(applied.deleted),
        }
        return (
            AuditEvent(self.room_id, p.id, "annotations.changed", doc_id, self.room_id, detail),
        )

    def watch(self) -> None:
        """Start the sweep of idle images, if it is not running."""
        if self.sweep is None:
            self.sweep = asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)

    def _sweep(self) -> None:
        self.sweep = None
        idle_since = asyncio.get_running_loop().time() - DOC_IDLE_S
        for doc_id, entry in list(self.docs.items()):
            if entry.used_at < idle_since and not entry.awareness and not entry.pending:
                del self.docs[doc_id]
                entry.close()
        if self.docs:
            self.watch()

    def claim(self, participant_id: str, entries: list[AwarenessEntry]) -> None:
        """Refuse entries for client ids another participant uses; bind new ones."""
        mine = self.clients_of.get(participant_id)
        for e in entries:
            owner = self.client_owner.get(e.client)
            if owner == participant_id:
                continue
            if owner is not None:
                raise Forbidden("that awareness client belongs to another participant")
            if mine is None:
                mine = self.clients_of[participant_id] = set()
            if len(mine) >= MAX_CLIENTS_PER_PARTICIPANT:
                raise ValidationFailed("too many awareness clients for one participant")
            mine.add(e.client)
            self.client_owner[e.client] = participant_id

    async def participant_disconnected(self, participant_id: str) -> None:
        """Tell the room that the participant's pointers are gone (y-protocols' removal:
        the next clock with a ``null`` state)."""
        clients = self.clients_of.pop(participant_id, set())
        for key in [k for k in self.bursts if k[0] == participant_id]:
            del self.bursts[key]
        for client in clients:
            del self.client_owner[client]
        for doc_id, entry in self.docs.items():
            gone = [entry.awareness.pop(c) for c in clients if c in entry.awareness]
            if gone:
                removed = [AwarenessEntry(e.client, e.clock + 1, b"null") for e in gone]
                self.outbox.awareness_entries(doc_id, removed, participant_id)

    participant_left = participant_disconnected

    async def close(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
        self.outbox.close()
        docs, self.docs = self.docs, {}
        for entry in docs.values():
            entry.close()


class AnnotationService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        *,
        compact_every: int = 500,
        load: LoopLoad | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        #: The event loop's load: pointers wait longer when it is busy (``POINTER_TICK_S``).
        self.load = load or LoopLoad()
        #: Updates appended to a document's log before it is compacted into one row.
        self.compact_every = compact_every

    async def message(self, p: Participant, room: Room, doc_id: str, data: bytes) -> None:
        try:
            msg = parse_message(data)
        except SyncError as exc:
            raise ValidationFailed("not a y-protocols message: " + str(exc)) from None
        comp = self._component(room)
        if msg.kind is MessageKind.AWARENESS:
            authorize(p, room, Action.VIEW)
            try:
                entries = parse_awareness(msg.payload)
            except SyncError as exc:
                raise ValidationFailed("not an awareness update: " + str(exc)) from None
            comp.claim(p.id, entries)
            entry = await self._entry(room, doc_id)
            for e in entries:
                known = entry.awareness.get(e.client)
                if e.removed:
                    entry.awareness.pop(e.client, None)
                elif known is None or e.clock >= known.clock:
                    entry.awareness[e.client] = e
            comp.outbox.awareness_entries(doc_id, entries, p.id)
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
            # Answer with what the client lacks, ask for what the server lacks, and show
            # who else is looking at this image.
            send = self.notifier.send
            send(room.id, p.id, "y", {"doc": doc_id, "data": step2})
            send(room.id, p.id, "y", {"doc": doc_id, "data": sync_step1(entry.doc.state_vector())})
            if entry.awareness:
                data = awareness_message(awareness_update(entry.awareness.values()))
                send(room.id, p.id, "y", {"doc": doc_id, "data": data})
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
        entry.changed()
        seq = entry.next_seq
        entry.next_seq += 1
        row = {
            "room_id": room.id,
            "doc_id": doc_id,
            "seq": seq,
            "author_id": p.id,
            "data": msg.payload,
            "at": now(),
        }
        entry.pending += 1
        try:
            await self.store.later(Insert(annotation_updates, row), *comp.audit(doc_id, p, applied))
        except Exception:
            # The document holds an update the log does not: reload it from the log. Its
            # audit event is lost with it, so the retry must not count as the same change.
            self._forget(room, doc_id)
            comp.bursts.pop((p.id, doc_id), None)
            raise Unavailable("the annotation could not be stored; sync again") from None
        finally:
            entry.pending -= 1
        if seq - entry.compacted_upto >= self.compact_every and not entry.doc.closed:
            # Row ``seq`` is on disk now; the snapshot may hold later updates too, which
            # their own rows repeat (applying a Yjs update twice changes nothing).
            entry.compacted_upto = seq
            self.store.later(self._compact_job(room, doc_id, seq, entry.doc.snapshot()))
        comp.outbox.update(doc_id, msg.payload, p.id)

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

    async def image(self, room: Room, doc_id: str) -> dict[str, dict[str, Any]]:
        """One image's annotations as plain JSON; empty for an image nobody annotated (which
        is not loaded: a request naming any image key must not grow the room)."""
        entry = self._component(room).docs.get(doc_id)
        if entry is None:
            async with self.store.db.read() as conn:
                found = (
                    await conn.execute(_HAS_LOG, {"room_id": room.id, "doc_id": doc_id})
                ).first()
            if found is None:
                return {}
            entry = await self._entry(room, doc_id)
        return entry.doc.annotations()

    def _component(self, room: Room) -> RoomAnnotations:
        comp = room.components.get(COMPONENT)
        if comp is None:
            comp = room.components[COMPONENT] = RoomAnnotations(self.notifier, room.id, self.load)
        assert isinstance(comp, RoomAnnotations)
        return comp

    def _forget(self, room: Room, doc_id: str) -> None:
        entry = self._component(room).docs.pop(doc_id, None)
        if entry is not None:
            entry.close()

    async def _entry(self, room: Room, doc_id: str) -> _Entry:
        comp = self._component(room)
        entry = comp.docs.get(doc_id)
        if entry is None:
            lock = comp.loading.setdefault(doc_id, asyncio.Lock())
            async with lock:
                entry = comp.docs.get(doc_id)
                if entry is None:
                    entry = comp.docs[doc_id] = await self._load(room, doc_id)
                    comp.watch()
            comp.loading.pop(doc_id, None)
        entry.used_at = asyncio.get_running_loop().time()
        return entry

    async def _load(self, room: Room, doc_id: str) -> _Entry:
        async with self.store.db.read() as conn:
            rows = (await conn.execute(_LOG, {"room_id": room.id, "doc_id": doc_id})).all()
        if not rows:
            return _Entry(AnnotationDocument(), 1)
        merged = (
            merge_updates(*[bytes(r.data) for r in rows]) if len(rows) > 1 else bytes(rows[0].data)
        )
        # Every row was validated before it was stored.
        return _Entry(AnnotationDocument.load(merged, trusted=True), rows[-1].seq + 1)
