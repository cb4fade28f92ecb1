"""``AnnotationDocument``: the server's copy of one image's shared annotations.

One pycrdt ``Doc`` per (room, image) holds one root ``Map`` named ``"annotations"``: the
annotation id maps to the annotation's JSON object, stored whole as a plain value, so the
last writer wins for the whole shape (``SCHEMA.md``). The document holds no room, socket or
storage state; ``annotations.sync`` frames its bytes and the caller decides who may write.

Validation happens as the update is applied, and a refused update is rolled back. The
document's map observer reports which keys the update added, updated or deleted (with old
and new values); if any change fails the checks, the document is rebuilt from its
*restore point*: an encoded state plus the accepted updates since (O(room), once per
rejection, which only a faulty or hostile client causes). The restore point is moved up
when the updates since it outweigh a quarter of it, so keeping it costs O(1) per update
byte and at most about 1.25 times the document's encoded size in memory. Updates that fail
to decode are refused before the document changes (yrs decodes the whole update before
integrating it), so they need no rebuild.

Checks, per changed key: the value is a valid annotation (``validate_annotation``) whose
``id`` is its key; an added annotation's ``author`` is the sender unless the sender is
the host (a host's edit that raced the author's delete arrives as an add); an updated or deleted
annotation's previous ``author`` is the sender unless the sender is the host; and an update
never changes the ``author``. The update may not create any root other than
``"annotations"``, nor exceed ``max_update_bytes``; and a document past
``max_document_bytes`` (encoded) takes deletions only, which bounds a room's memory.

Gaps: yrs keeps structs whose causal predecessors are missing as *pending* and integrates
them when a later update fills the gap, which would check their effects against that later
sender. So an update must carry one client's structs, starting no later than the document's
clock for that client (``_check_no_gap``, before the update is applied); otherwise the
client resyncs (step 1 / step 2).
A deletion of a struct the document lacks is kept pending the same way; it can only remove,
and removing is checked when it happens.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from pycrdt import Doc, Map, Subscription, TransactionEvent, merge_updates

from annotations.schema import AnnotationError, validate_annotation
from annotations.sync import SyncError, read_var_uint

__all__ = [
    "MAP_NAME",
    "MAX_DOCUMENT_BYTES",
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
#: Largest encoded document that still takes additions: about 16,000 typical shapes on
#: one image. Measured (bench annotations, late join): 10,000 shapes, 4.9 MB encoded, grew
#: the server by 54-64 MB, so one image stays near or under 100 MB.
MAX_DOCUMENT_BYTES: Final = 8 * 1024 * 1024

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
            # The host may add under another author: an edit of theirs that raced the
            # author's delete arrives as an add, and so does undoing that delete.
            if _check_value(path, change.get("newValue")) != author and not is_host:
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
    """The native map event: ``keys`` is valid during the callback only."""

    keys: dict[str, _KeyChange]


#: Restore-point bytes below which the restore point is not moved up (see module doc).
_MIN_RESTORE_BYTES: Final = 64 * 1024


class AnnotationDocument:
    """The shared annotations of one image in one room (module docstring).

    ``apply`` validates and applies a client's update; ``state_vector`` and ``diff`` answer
    the sync handshake; ``snapshot`` and ``load`` persist the whole document.
    """

    def __init__(
        self,
        *,
        max_update_bytes: int = MAX_UPDATE_BYTES,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.max_update_bytes = max_update_bytes
        self.max_document_bytes = max_document_bytes
        self._closed = False
        self._keys: dict[str, _KeyChange] = {}
        self._changed = False
        self._restore_state = b""
        self._since_restore: list[bytes] = []
        self._since_bytes = 0
        self._open(None)
        self._snapshot: bytes | None = None
        self._compressed: bytes | None = None

    def _open(self, state: bytes | None) -> None:
        self._doc: Doc[Any] = Doc()
        self._map: Map[Any] = self._doc.get(MAP_NAME, type=Map)
        if state is not None:
            self._doc.apply_update(state)
        # The native map's own observer: pycrdt's ``Map.observe`` wraps every event in
        # Python objects by walking all old and new values (two thirds of an update's
        # cost); the values here are plain JSON, so the native ``keys`` dict is enough.
        self._map_sub: Subscription = self._map.integrated.observe(self._on_map)
        self._doc_sub: Subscription = self._doc.observe(self._on_transaction)

    def _on_map(self, event: _KeysEvent) -> None:
        self._keys.update(event.keys)

    def _on_transaction(self, _event: TransactionEvent) -> None:
        self._changed = True  # yrs emits only for transactions that changed the document

    @classmethod
    def load(
        cls,
        snapshot: bytes,
        *,
        compressed: bool = False,
        trusted: bool = False,
        max_update_bytes: int = MAX_UPDATE_BYTES,
    ) -> AnnotationDocument:
        """A document from ``snapshot()`` (or, with ``compressed``, ``compressed_snapshot()``)
        bytes. The content is validated once (O(document): about 1 s at 10,000
        annotations), unless ``trusted`` (bytes this class accepted before, e.g. the
        server's own update log); raises ``AnnotationRejected`` if the bytes do not decode
        or hold anything the schema refuses."""
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
        if not trusted:
            for key, value in self._map.items():
                _check_value(_key_path(key), value)
        self._restore_state = snapshot
        return self

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DocumentClosed("annotation document closed")

    def apply(self, update: bytes, *, author: str, is_host: bool) -> Applied:
        """Validate ``update`` from participant ``author`` and apply it, or raise
        ``AnnotationRejected`` leaving the document unchanged (module docstring)."""
        self._check_open()
        if len(update) > self.max_update_bytes:
            raise AnnotationRejected(
                "update", "larger than " + str(self.max_update_bytes) + " bytes"
            )
        clocks = _check_no_gap(update, self._doc.get_state())
        if clocks is not None and self._size_bound() + len(update) > self.max_document_bytes:
            # The bound overestimates after deletions: measure before refusing.
            if len(self.snapshot()) + len(update) > self.max_document_bytes:
                raise AnnotationRejected(
                    "update", "the image holds too many annotations: delete some first"
                )
        self._keys = {}
        self._changed = False
        try:
            self._doc.apply_update(update)
        except ValueError:
            raise AnnotationRejected("update", "not a Yjs update") from None
        changes, changed = self._keys, self._changed
        if not changed:
            if (clocks is not None and clocks[0] == clocks[1]) or (
                clocks is None and _deletes_unknown(update, self._doc.get_state())
            ):
                # Nothing integrated, yet new structs, or deletions of items the server
                # lacks: yrs holds them back for a later update (of another sender).
                self._restore()
                raise AnnotationRejected("update", "depends on changes the server lacks; resync")
            return Applied()  # a duplicate
        try:
            _check_roots(self._doc)
            added, updated, deleted = _check_changes(changes, author, is_host)
        except AnnotationRejected:
            self._restore()
            raise
        self._snapshot = self._compressed = None
        self._since_restore.append(update)
        self._since_bytes += len(update)
        if self._since_bytes > max(_MIN_RESTORE_BYTES, len(self._restore_state) >> 2):
            self._restore_state = self._doc.get_update()
            self._since_restore = []
            self._since_bytes = 0
        return Applied(tuple(added), tuple(updated), tuple(deleted), changed)

    def _size_bound(self) -> int:
        """At least the encoded size: the restore point plus the updates since."""
        return len(self._restore_state) + self._since_bytes

    def _restore(self) -> None:
        """Back to the last accepted update: the restore point, then what followed it."""
        self._drop_subscriptions()
        since = self._since_restore
        self._open(self._restore_state or None)
        if since:
            self._doc.apply_update(merge_updates(*since) if len(since) > 1 else since[0])

    def _drop_subscriptions(self) -> None:
        self._map_sub.drop()
        self._doc.unobserve(self._doc_sub)

    def state_vector(self) -> bytes:
        """The encoded state vector, for SyncStep1."""
        self._check_open()
        return self._doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """The update a peer with ``state_vector`` is missing, for SyncStep2. Raises
        ``AnnotationRejected`` if ``state_vector`` does not decode."""
        self._check_open()
        try:
            return self._doc.get_update(state_vector)
        except ValueError:
            raise AnnotationRejected("state_vector", "not a Yjs state vector") from None

    def snapshot(self) -> bytes:
        """The whole document as one encoded update; cached until the next change."""
        self._check_open()
        if self._snapshot is None:
            self._snapshot = self._restore_state = self._doc.get_update()
            # The encoding is paid for: it is the restore point too.
            self._since_restore = []
            self._since_bytes = 0
        return self._snapshot

    def compressed_snapshot(self) -> bytes:
        """``snapshot()`` compressed with zlib; cached until the next change."""
        if self._compressed is None:
            self._compressed = zlib.compress(self.snapshot())
        return self._compressed

    def annotations(self) -> dict[str, dict[str, Any]]:
        """All annotations as plain JSON (O(document): not for the per-update path)."""
        self._check_open()
        return cast(dict[str, dict[str, Any]], self._map.to_py() or {})

    def close(self) -> None:
        """Release both documents; later calls raise ``DocumentClosed``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._drop_subscriptions()
            self._snapshot = self._compressed = None
            self._restore_state = b""
            self._since_restore = []


def _client_clock(state_vector: bytes, client: int) -> int:
    """``client``'s clock in an encoded state vector (var-uint count, then (client, clock)
    var-uint pairs, from yrs: well-formed). One pass over the bytes, no call per number."""
    values: list[int] = []
    value = shift = 0
    for byte in state_vector:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            values.append(value)
            value = shift = 0
        else:
            shift += 7
    for i in range(1, len(values) - 1, 2):
        if values[i] == client:
            return values[i + 1]
    return 0


def _check_no_gap(update: bytes, state_vector: bytes) -> tuple[int, int] | None:
    """Refuse an update that carries more than one client's structs, or structs that do not
    follow on from what the document has; return ``(first clock, the document's clock)``
    for that client, or None for an update of deletions only.

    yrs holds back structs whose predecessors it lacks and integrates them silently when a
    later update fills the gap, so their changes would be checked against the wrong sender.
    An update encoded from one Y.Doc's own changes (Yjs update v1: var-uint client count,
    then per client: struct count, client id, first clock) names one client, and its first
    clock must not be past what the document already has from that client. (Structs whose
    origin is another client's item the server lacks are held back too: ``apply`` refuses
    an update that brought new structs but changed nothing.)
    """
    try:
        n_clients, pos = read_var_uint(update, 0)
        if n_clients == 0:
            return None  # deletions only
        if n_clients > 1:
            _check_decodes(update)
            raise AnnotationRejected("update", "carries more than one client's changes; resync")
        _, pos = read_var_uint(update, pos)  # struct count
        client, pos = read_var_uint(update, pos)
        first_clock, _ = read_var_uint(update, pos)
    except SyncError:
        raise AnnotationRejected("update", "not a Yjs update") from None
    clock = _client_clock(state_vector, client)
    if first_clock > clock:
        _check_decodes(update)
        raise AnnotationRejected("update", "depends on changes the server lacks; resync")
    return first_clock, clock


def _deletes_unknown(update: bytes, state_vector: bytes) -> bool:
    """Whether a deletions-only update (Yjs update v1: var-uint 0 clients, then the delete
    set: var-uint client count, per client its id, range count and (clock, length)
    ranges) deletes anything past the document's clock for that client."""
    try:
        pos = read_var_uint(update, 0)[1]
        n_clients, pos = read_var_uint(update, pos)
        for _ in range(n_clients):
            client, pos = read_var_uint(update, pos)
            n_ranges, pos = read_var_uint(update, pos)
            known = _client_clock(state_vector, client)
            for _ in range(n_ranges):
                clock, pos = read_var_uint(update, pos)
                length, pos = read_var_uint(update, pos)
                if clock + length > known:
                    return True
    except SyncError:
        return True  # yrs took it, so this does not happen; refuse rather than guess
    return False


def _check_decodes(update: bytes) -> None:
    """Refuse bytes that are not a Yjs update at all (error paths only: a full decode)."""
    try:
        merge_updates(update, update)
    except ValueError:
        raise AnnotationRejected("update", "not a Yjs update") from None


def _check_roots(doc: Doc[Any]) -> None:
    for name in doc.keys():
        if name != MAP_NAME:
            raise AnnotationRejected("update", "creates a root type other than " + MAP_NAME)
