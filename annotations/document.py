"""``AnnotationDocument``: the server's copy of one image's shared annotations.

One pycrdt ``Doc`` per (room, image) holds one root ``Map`` named ``"annotations"``: the
annotation id maps to the annotation's JSON object, stored whole as a plain value, so the
last writer wins for the whole shape (``SCHEMA.md``). The document holds no room, socket or
storage state; ``annotations.sync`` frames its bytes and the caller decides who may write.

Validation happens before the real document changes. A *twin* ``Doc`` is kept in lockstep
with the real one: every update goes to the twin first, its ``Map`` event tells which keys
were added, updated or deleted (with old and new values), and only if every change passes
the checks is the same update applied to the real document. Both documents then hold the
same updates in the same order. Keeping the twin costs one extra apply per update (a few
µs); copying the document per update would cost O(room). A rejected update has touched the
twin, so the twin is rebuilt from the real document (O(room), once per rejection). Updates
that fail to decode are refused before either document changes (yrs decodes the whole
update before integrating it), so they need no rebuild.

Checks, per changed key: the value is a valid annotation (``validate_annotation``) whose
``id`` is its key; an added annotation's ``author`` is the sender; an updated or deleted
annotation's previous ``author`` is the sender unless the sender is the host; and an update
never changes the ``author``. The update may not create any root other than
``"annotations"``, nor exceed ``max_update_bytes``.

Gaps: yrs keeps structs whose causal predecessors are missing as *pending* and integrates
them when a later update fills the gap, which would check their effects against that later
sender. So an update must carry one client's structs, starting no later than the document's
clock for that client (``_check_no_gap``); otherwise the client resyncs (step 1 / step 2).
A deletion of a struct the document lacks is kept pending the same way; it can only remove,
and removing is checked when it happens.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from pycrdt import Doc, Map, MapEvent, Subscription, TransactionEvent

from annotations.schema import AnnotationError, validate_annotation
from annotations.sync import SyncError, read_var_uint

__all__ = [
    "MAP_NAME",
    "MAX_UPDATE_BYTES",
    "AnnotationDocument",
    "AnnotationRejected",
    "Applied",
    "DocumentClosed",
]

#: Name of the one root type: a ``Y.Map`` from annotation id to annotation JSON.
MAP_NAME: Final = "annotations"
#: Largest update accepted from a client, in bytes.
MAX_UPDATE_BYTES: Final = 1024 * 1024

#: One key's change as reported by ``MapEvent.keys``:
#: ``{"action": "add" | "update" | "delete", "oldValue": ..., "newValue": ...}``.
_KeyChange = dict[str, Any]


class AnnotationRejected(ValueError):
    """An update was refused; neither document changed. ``path`` names what was wrong:
    ``update`` for the update as a whole, ``<id>`` for an annotation, or ``<id>.<field>``
    for a schema error inside one (the schema's own path after the id)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path + ": " + reason)
        self.path = path
        self.reason = reason


class DocumentClosed(RuntimeError):
    """The document was closed; it no longer accepts or serves updates."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The annotation ids an accepted update changed, by action (for the audit trail).
    All empty when the update changed nothing visible (a duplicate, or an edit that lost
    the last-writer-wins race)."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    #: Whether the update changed the document at all (new structs or deletions).
    changed: bool = field(default=False)

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


def _key_path(key: str) -> str:
    shown = key[:64]
    if shown.isascii() and shown.replace("_", "").replace("-", "").isalnum():
        return shown
    return "[" + repr(shown)[:72] + "]"


def _check_value(key: str, value: object) -> str:
    """Validate one stored value; return its author."""
    try:
        annotation = validate_annotation(value)
    except AnnotationError as error:
        sub = key if error.path == "annotation" else key + "." + error.path
        raise AnnotationRejected(sub, error.reason) from None
    if annotation.id != key:
        raise AnnotationRejected(key + ".id", "does not match the map key")
    return annotation.author


def _author_of(value: object) -> object:
    return value.get("author") if type(value) is dict else None


def _check_changes(
    changes: dict[str, _KeyChange], author: str, is_host: bool
) -> tuple[list[str], list[str], list[str]]:
    added: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    for key, change in changes.items():
        path = _key_path(key)
        action = change.get("action")
        if action == "add":
            if _check_value(path, change.get("newValue")) != author:
                raise AnnotationRejected(path + ".author", "not the sender")
            added.append(key)
        elif action == "update":
            new_author = _check_value(path, change.get("newValue"))
            old_author = _author_of(change.get("oldValue"))
            if old_author != author and not is_host:
                raise AnnotationRejected(path, "another participant's annotation")
            if new_author != old_author:
                raise AnnotationRejected(path + ".author", "may not change")
            updated.append(key)
        elif action == "delete":
            if _author_of(change.get("oldValue")) != author and not is_host:
                raise AnnotationRejected(path, "another participant's annotation")
            deleted.append(key)
        else:  # pragma: no cover - pycrdt reports only these three actions
            raise AnnotationRejected(path, "unknown change")
    return added, updated, deleted


class _KeysEvent(Protocol):
    """What ``MapEvent`` carries but pycrdt does not annotate (it sets ``keys`` from the
    native event's ``__slots__``)."""

    keys: dict[str, _KeyChange]


class _Twin:
    """A ``Doc`` kept in lockstep with the real one, observed to report what an update
    changed."""

    def __init__(self, state: bytes) -> None:
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get(MAP_NAME, type=Map)
        self.doc.apply_update(state)
        self.keys: dict[str, _KeyChange] = {}
        self.changed = False
        self._map_sub: Subscription | None = self.map.observe(self._on_map)
        self._doc_sub: Subscription | None = self.doc.observe(self._on_transaction)

    def _on_map(self, event: MapEvent) -> None:
        self.keys.update(cast(_KeysEvent, event).keys)

    def _on_transaction(self, _event: TransactionEvent) -> None:
        self.changed = True  # yrs emits only for transactions that changed the document

    def apply(self, update: bytes) -> tuple[dict[str, _KeyChange], bool]:
        """Apply ``update``; return the changed keys and whether anything changed."""
        self.keys = {}
        self.changed = False
        self.doc.apply_update(update)
        return self.keys, self.changed

    def close(self) -> None:
        if self._map_sub is not None:
            self.map.unobserve(self._map_sub)
            self._map_sub = None
        if self._doc_sub is not None:
            self.doc.unobserve(self._doc_sub)
            self._doc_sub = None


class AnnotationDocument:
    """The shared annotations of one image in one room (module docstring).

    ``apply`` validates and applies a client's update; ``state_vector`` and ``diff`` answer
    the sync handshake; ``snapshot`` and ``load`` persist the whole document.
    """

    def __init__(self, *, max_update_bytes: int = MAX_UPDATE_BYTES) -> None:
        self.max_update_bytes = max_update_bytes
        self._doc: Doc[Any] = Doc()
        self._map: Map[Any] = self._doc.get(MAP_NAME, type=Map)
        self._twin: _Twin | None = _Twin(self._doc.get_update())
        self._snapshot: bytes | None = None
        self._compressed: bytes | None = None

    @classmethod
    def load(
        cls, snapshot: bytes, *, compressed: bool = False, max_update_bytes: int = MAX_UPDATE_BYTES
    ) -> AnnotationDocument:
        """A document from ``snapshot()`` (or, with ``compressed``, ``compressed_snapshot()``)
        bytes. The content is validated once (O(document)); raises ``AnnotationRejected``
        if the bytes do not decode or hold anything the schema refuses."""
        if compressed:
            try:
                snapshot = zlib.decompress(snapshot)
            except zlib.error:
                raise AnnotationRejected("snapshot", "not zlib data") from None
        self = cls(max_update_bytes=max_update_bytes)
        try:
            self._doc.apply_update(snapshot)
        except ValueError:
            raise AnnotationRejected("snapshot", "not a Yjs update") from None
        _check_roots(self._doc)
        for key, value in self._map.items():
            _check_value(_key_path(key), value)
        self._rebuild_twin()
        return self

    @property
    def closed(self) -> bool:
        return self._twin is None

    def _live_twin(self) -> _Twin:
        if self._twin is None:
            raise DocumentClosed("annotation document closed")
        return self._twin

    def apply(self, update: bytes, *, author: str, is_host: bool) -> Applied:
        """Validate ``update`` from participant ``author`` and apply it, or raise
        ``AnnotationRejected`` leaving the document unchanged (module docstring)."""
        twin = self._live_twin()
        if len(update) > self.max_update_bytes:
            raise AnnotationRejected(
                "update", "larger than " + str(self.max_update_bytes) + " bytes"
            )
        try:
            changes, changed = twin.apply(update)
        except ValueError:
            raise AnnotationRejected("update", "not a Yjs update") from None
        try:
            try:
                _check_no_gap(update, self._doc.get_state())
            except AnnotationRejected:
                changed = True  # the twin may hold pending structs now: rebuild it
                raise
            if changed:
                _check_roots(twin.doc)
            added, updated, deleted = _check_changes(changes, author, is_host)
        except AnnotationRejected:
            if changed:
                self._rebuild_twin()
            raise
        self._doc.apply_update(update)
        if changed:
            self._snapshot = self._compressed = None
        return Applied(tuple(added), tuple(updated), tuple(deleted), changed)

    def _rebuild_twin(self) -> None:
        twin = self._live_twin()
        twin.close()
        self._twin = _Twin(self._doc.get_update())

    def state_vector(self) -> bytes:
        """The encoded state vector, for SyncStep1."""
        self._live_twin()
        return self._doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """The update a peer with ``state_vector`` is missing, for SyncStep2. Raises
        ``AnnotationRejected`` if ``state_vector`` does not decode."""
        self._live_twin()
        try:
            return self._doc.get_update(state_vector)
        except ValueError:
            raise AnnotationRejected("state_vector", "not a Yjs state vector") from None

    def snapshot(self) -> bytes:
        """The whole document as one encoded update; cached until the next change."""
        self._live_twin()
        if self._snapshot is None:
            self._snapshot = self._doc.get_update()
        return self._snapshot

    def compressed_snapshot(self) -> bytes:
        """``snapshot()`` compressed with zlib; cached until the next change."""
        if self._compressed is None:
            self._compressed = zlib.compress(self.snapshot())
        return self._compressed

    def annotations(self) -> dict[str, dict[str, Any]]:
        """All annotations as plain JSON (O(document): not for the per-update path)."""
        self._live_twin()
        return cast(dict[str, dict[str, Any]], self._map.to_py() or {})

    def close(self) -> None:
        """Release both documents; later calls raise ``DocumentClosed``. Idempotent."""
        if self._twin is not None:
            self._twin.close()
            self._twin = None
            self._snapshot = self._compressed = None


def _state_clocks(state_vector: bytes) -> dict[int, int]:
    """Decode a state vector: var-uint count, then (client, clock) var-uint pairs."""
    count, pos = read_var_uint(state_vector, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        clocks[client], pos = read_var_uint(state_vector, pos)
    return clocks


def _check_no_gap(update: bytes, state_vector: bytes) -> None:
    """Refuse an update that carries more than one client's structs, or structs that do not
    follow on from what the document has.

    yrs holds back structs whose predecessors it lacks and integrates them silently when a
    later update fills the gap, so their changes would be checked against the wrong sender.
    An update encoded from one Y.Doc's own changes (Yjs update v1: var-uint client count,
    then per client: struct count, client id, first clock) names one client, and its first
    clock must not be past what the document already has from that client.
    """
    try:
        n_clients, pos = read_var_uint(update, 0)
        if n_clients == 0:
            return  # deletions only
        if n_clients > 1:
            raise AnnotationRejected("update", "carries more than one client's changes; resync")
        _, pos = read_var_uint(update, pos)  # struct count
        client, pos = read_var_uint(update, pos)
        first_clock, _ = read_var_uint(update, pos)
    except SyncError:
        raise AnnotationRejected("update", "not a Yjs update") from None
    if first_clock > _state_clocks(state_vector).get(client, 0):
        raise AnnotationRejected("update", "depends on changes the server lacks; resync")


def _check_roots(doc: Doc[Any]) -> None:
    for name in doc.keys():
        if name != MAP_NAME:
            raise AnnotationRejected("update", "creates a root type other than " + MAP_NAME)
