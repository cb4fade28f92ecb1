"""Append-only audit log, hash-chained per scope (a room, or ``accounts``).

Each event's hash covers the previous hash and the event's canonical JSON, so an edit or
a deletion in the middle breaks every later hash (``verify``). Events name ids, never
passwords, share codes, tokens or chat text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.ids import now
from consultd.store.tables import audit_events

GENESIS = "0" * 64
_HEAD = (
    sa.select(audit_events.c.seq, audit_events.c.hash)
    .where(audit_events.c.scope == sa.bindparam("scope"))
    .order_by(audit_events.c.seq.desc())
    .limit(1)
)
_INSERT = audit_events.insert()
ACCOUNTS = "accounts"


def _digest(prev: str, event: dict[str, Any]) -> str:
    body = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event to record (``AuditLog.record_many``, or queued with ``Store.later``)."""

    scope: str
    actor: str
    action: str
    target: str | None = None
    room_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    def __init__(self) -> None:
        # scope -> (last seq, last hash). Callers write inside Database.write(), which
        # serialises writers; a room's scope is only written by the process owning the room.
        self._heads: dict[str, tuple[int, str]] = {}

    async def record(
        self,
        conn: AsyncConnection,
        *,
        scope: str,
        actor: str,
        action: str,
        target: str | None = None,
        room_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.record_many(
            conn, [AuditEvent(scope, actor, action, target, room_id, detail or {})]
        )

    async def record_many(self, conn: AsyncConnection, events: list[AuditEvent]) -> None:
        """Append ``events`` in order, each chained to the one before in its scope, in one
        ``executemany``."""
        await self.load_heads(conn, self.missing_heads({e.scope for e in events}))
        rows = self.chain(events)
        if rows:
            await conn.execute(_INSERT, rows)

    def missing_heads(self, scopes: set[str]) -> set[str]:
        """The scopes whose newest event is not cached (``load_heads`` reads them)."""
        return scopes - self._heads.keys()

    async def load_heads(self, conn: AsyncConnection, scopes: set[str]) -> None:
        """Read the newest event of each scope (once per scope and process: a room's scope
        is written only by the process that owns the room)."""
        for scope in scopes:
            row = (await conn.execute(_HEAD, {"scope": scope})).first()
            self._heads[scope] = (row.seq, row.hash) if row else (0, GENESIS)

    def chain(self, events: list[AuditEvent]) -> list[dict[str, Any]]:
        """The ``audit_events`` rows for ``events``, heads loaded (``load_heads``); the
        caller inserts them in the transaction it is in, and calls ``forget()`` if that
        transaction rolls back."""
        rows: list[dict[str, Any]] = []
        heads = self._heads
        for e in events:
            seq, prev = heads[e.scope]
            seq += 1
            event = {
                "scope": e.scope,
                "seq": seq,
                "at": now(),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "room_id": e.room_id,
                "detail": e.detail,
            }
            digest = _digest(prev, event)
            event["prev_hash"], event["hash"] = prev, digest
            rows.append(event)
            heads[e.scope] = (seq, digest)
        return rows

    def forget(self) -> None:
        """Drop cached heads (after a rolled-back transaction); they reload lazily."""
        self._heads.clear()

    @staticmethod
    def verify(rows: list[dict[str, Any]]) -> bool:
        """True when ``rows`` (one scope, in seq order) form an unbroken chain."""
        prev = GENESIS
        for r in rows:
            event = {
                k: r[k]
                for k in ("scope", "seq", "at", "actor", "action", "target", "room_id", "detail")
            }
            if r["prev_hash"] != prev or _digest(prev, event) != r["hash"]:
                return False
            prev = r["hash"]
        return True
