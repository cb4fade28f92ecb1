"""y-protocols messages as plain bytes in, bytes out; no sockets, no documents.

The wire format is y-protocols' ``PROTOCOL.md`` (https://github.com/yjs/y-protocols). Every
message starts with a ``varUint`` message type; lib0's ``varUint`` is little-endian base 128
(7 bits per byte, high bit set on every byte but the last) and ``varUint8Array`` is a
``varUint`` length followed by that many bytes::

    sync:      varUint(0) • varUint(syncType) • varUint8Array(payload)
               syncType 0 = SyncStep1 (payload: encoded state vector)
               syncType 1 = SyncStep2 (payload: encoded document update)
               syncType 2 = Update    (payload: encoded document update)
    awareness: varUint(1) • varUint8Array(awareness update)

One call parses exactly one message; trailing bytes, unknown types and truncated input raise
``SyncError``. The CRDT payloads are not decoded here (``annotations.document`` does that).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum
from typing import Final, NamedTuple

from pycrdt import YMessageType, YSyncMessageType, write_var_uint

__all__ = [
    "MAX_AWARENESS_STATE_BYTES",
    "MAX_VAR_UINT_BYTES",
    "AwarenessEntry",
    "MessageKind",
    "SyncError",
    "SyncMessage",
    "awareness_message",
    "awareness_update",
    "parse_awareness",
    "parse_message",
    "read_var_uint",
    "sync_step1",
    "sync_step2",
    "update_message",
]

#: Longest ``varUint`` accepted: 8 bytes carry 56 bits, more than lib0's 53-bit integers.
MAX_VAR_UINT_BYTES: Final = 8
#: Largest awareness state (a pointer, a name, the image being looked at) accepted.
MAX_AWARENESS_STATE_BYTES: Final = 4096


class SyncError(ValueError):
    """Bytes that are not one well-formed y-protocols message (never echoes the input)."""


class MessageKind(Enum):
    """What one incoming message carries (PROTOCOL.md, "Sync protocol" and "Awareness")."""

    SYNC_STEP1 = "sync_step1"
    SYNC_STEP2 = "sync_step2"
    UPDATE = "update"
    AWARENESS = "awareness"


_SYNC_KINDS: Final = {
    YSyncMessageType.SYNC_STEP1.value: MessageKind.SYNC_STEP1,
    YSyncMessageType.SYNC_STEP2.value: MessageKind.SYNC_STEP2,
    YSyncMessageType.SYNC_UPDATE.value: MessageKind.UPDATE,
}


class SyncMessage(NamedTuple):
    """One parsed message: its kind and the payload of its ``varUint8Array``. (Tuples:
    one of each per pointer message, and a frozen dataclass costs a ``__setattr__`` per
    field.)"""

    kind: MessageKind
    payload: bytes


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """lib0 ``readVarUint`` (PROTOCOL.md, "Encoding"): the value and the next position."""
    if pos < len(data) and data[pos] < 0x80:
        return data[pos], pos + 1  # one byte: message types, counts, most lengths
    value = 0
    shift = 0
    end = min(len(data), pos + MAX_VAR_UINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    if pos >= len(data):
        raise SyncError("truncated varUint")
    raise SyncError("varUint longer than " + str(MAX_VAR_UINT_BYTES) + " bytes")


def _read_var_uint8_array(data: bytes, pos: int) -> tuple[bytes, int]:
    """lib0 ``readVarUint8Array``: a ``varUint`` length, then that many bytes."""
    length, pos = read_var_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise SyncError("truncated payload")
    return data[pos:end], end


def parse_message(data: bytes) -> SyncMessage:
    """Parse one y-protocols message (PROTOCOL.md, "Sync protocol v1" and "Awareness").

    Raises ``SyncError`` for empty, truncated or trailing bytes, and for message or sync
    types other than sync (step 1, step 2, update) and awareness.
    """
    message_type, pos = read_var_uint(data, 0)
    if message_type == YMessageType.SYNC:
        sync_type, pos = read_var_uint(data, pos)
        kind = _SYNC_KINDS.get(sync_type)
        if kind is None:
            raise SyncError("unknown sync message type")
    elif message_type == YMessageType.AWARENESS:
        kind = MessageKind.AWARENESS
    else:
        raise SyncError("unsupported message type")
    payload, pos = _read_var_uint8_array(data, pos)
    if pos != len(data):
        raise SyncError("trailing bytes after the message")
    return SyncMessage(kind, payload)


def _sync(sync_type: YSyncMessageType, payload: bytes) -> bytes:
    return b"".join(
        (
            write_var_uint(YMessageType.SYNC),
            write_var_uint(sync_type),
            write_var_uint(len(payload)),
            payload,
        )
    )


def sync_step1(state_vector: bytes) -> bytes:
    """SyncStep1 (PROTOCOL.md): "here is my state vector, send me what I miss"."""
    return _sync(YSyncMessageType.SYNC_STEP1, state_vector)


def sync_step2(update: bytes) -> bytes:
    """SyncStep2 (PROTOCOL.md): the reply to SyncStep1, the update the peer is missing."""
    return _sync(YSyncMessageType.SYNC_STEP2, update)


def update_message(update: bytes) -> bytes:
    """Update (PROTOCOL.md): an incremental document update, sent after the handshake."""
    return _sync(YSyncMessageType.SYNC_UPDATE, update)


def awareness_message(awareness_update: bytes) -> bytes:
    """Awareness (PROTOCOL.md): passes an encoded awareness update through unchanged."""
    return b"".join(
        (
            write_var_uint(YMessageType.AWARENESS),
            write_var_uint(len(awareness_update)),
            awareness_update,
        )
    )


class AwarenessEntry(NamedTuple):
    """One client's state in an awareness update: ``state`` is its JSON text as UTF-8
    (``b"null"``: the client is gone)."""

    client: int
    clock: int
    state: bytes

    @property
    def removed(self) -> bool:
        return self.state == b"null"


def parse_awareness(update: bytes, *, max_entries: int = 16) -> list[AwarenessEntry]:
    """Decode an awareness update (y-protocols ``awareness.js``: ``varUint`` count, then per
    client ``varUint`` clientID, ``varUint`` clock, ``varString`` JSON state). Raises
    ``SyncError`` for malformed bytes, more than ``max_entries`` entries, or a state that
    is not a JSON object or ``null`` of at most ``MAX_AWARENESS_STATE_BYTES`` (other peers
    ``JSON.parse`` it)."""
    count, pos = read_var_uint(update, 0)
    if count > max_entries:
        raise SyncError("too many awareness entries")
    entries: list[AwarenessEntry] = []
    for _ in range(count):
        client, pos = read_var_uint(update, pos)
        clock, pos = read_var_uint(update, pos)
        state, pos = _read_var_uint8_array(update, pos)
        if len(state) > MAX_AWARENESS_STATE_BYTES:
            raise SyncError("awareness state larger than " + str(MAX_AWARENESS_STATE_BYTES))
        if state != b"null":
            try:
                # Decoded first: ``json.loads`` of bytes sniffs their encoding on each call.
                value = json.loads(state.decode())
            except ValueError:  # UnicodeDecodeError included
                raise SyncError("awareness state is not JSON") from None
            if type(value) is not dict:
                raise SyncError("awareness state is not a JSON object or null")
        entries.append(AwarenessEntry(client, clock, state))
    if pos != len(update):
        raise SyncError("trailing bytes after the awareness update")
    return entries


def awareness_update(entries: Iterable[AwarenessEntry]) -> bytes:
    """Encode entries as one awareness update (the inverse of ``parse_awareness``)."""
    parts: list[bytes] = []
    for e in entries:
        parts += (write_var_uint(e.client), write_var_uint(e.clock))
        parts += (write_var_uint(len(e.state)), e.state)
    return write_var_uint(len(parts) // 4) + b"".join(parts)
